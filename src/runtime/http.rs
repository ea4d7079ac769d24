//! `/metrics`, `/healthz` and `/readyz`, served on one port.

use super::health::Health;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

/// Binds `addr` and serves in the background; returns the address bound.
pub async fn serve(addr: SocketAddr, registry: Registry, health: Arc<Health>) -> Result<SocketAddr, BindError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let router = router(Arc::new(registry), health);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok(bound)
}

fn router(registry: Arc<Registry>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(Shared { registry, health })
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    let text = super::metrics::render(&shared.registry);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

async fn ready(State(shared): State<Shared>) -> impl IntoResponse {
    let readiness = shared.health.readiness();
    let code = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, readiness.message)
}
