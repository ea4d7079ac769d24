//! `/metrics`, `/healthz` and `/readyz`, served on one port. `/metrics` may
//! require a bearer token (`--metrics-token-file`); the probes never do, since
//! the kubelet sends no credentials.

use super::health::Health;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot read the metrics token file {}: {source}", path.display())]
    TokenFile { path: PathBuf, source: std::io::Error },
    #[error("the metrics token file {} is empty: /metrics would accept no token", path.display())]
    EmptyToken { path: PathBuf },
}

/// Who may read `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MetricsAuth {
    /// Anyone who reaches the port.
    #[default]
    Open,
    /// Only a request with `Authorization: Bearer <the file's contents, trimmed>`.
    /// The file is read again on every scrape, so a rotated Secret takes effect
    /// without a restart.
    BearerTokenFile(PathBuf),
}

impl MetricsAuth {
    pub fn from_token_file(path: Option<PathBuf>) -> Self {
        path.map_or(Self::Open, Self::BearerTokenFile)
    }
}

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    health: Arc<Health>,
    auth: MetricsAuth,
}

/// Binds `addr` and serves in the background; returns the address bound. A
/// token file that cannot be read, or is empty, fails here rather than at the
/// first scrape.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
    auth: MetricsAuth,
) -> Result<SocketAddr, ServeError> {
    if let MetricsAuth::BearerTokenFile(path) = &auth {
        read_token(path).await?;
    }
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let router = router(Arc::new(registry), health, auth);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok(bound)
}

fn router(registry: Arc<Registry>, health: Arc<Health>, auth: MetricsAuth) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(Shared { registry, health, auth })
}

async fn metrics(State(shared): State<Shared>, request: Request) -> Response {
    if let MetricsAuth::BearerTokenFile(path) = &shared.auth
        && let Err(refusal) = authorize(path, request.headers()).await
    {
        return refusal;
    }
    let text = super::metrics::render(&shared.registry);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// `Ok` when the request carries the token in `path`; otherwise the answer to send.
async fn authorize(path: &Path, headers: &HeaderMap) -> Result<(), Response> {
    let expected = read_token(path).await.map_err(|error| {
        tracing::warn!(%error, "refusing a scrape of /metrics");
        (StatusCode::INTERNAL_SERVER_ERROR, "the metrics token file cannot be read; see the controller's log\n")
            .into_response()
    })?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "unauthorized: /metrics needs the header Authorization: Bearer <the metrics token>\n",
        )
            .into_response()),
    }
}

async fn read_token(path: &Path) -> Result<String, ServeError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| ServeError::TokenFile { path: path.to_owned(), source })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ServeError::EmptyToken { path: path.to_owned() });
    }
    Ok(token.to_owned())
}

/// Equal without an early exit, so response times do not reveal a prefix of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ready(State(shared): State<Shared>) -> impl IntoResponse {
    let readiness = shared.health.readiness();
    let code = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, readiness.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// `GET path` over a real socket: the status code and the whole response.
    async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n");
        let response = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
        .await
        .unwrap();
        let code = response.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, response)
    }

    async fn serve_with(auth: MetricsAuth) -> SocketAddr {
        let mut registry = Registry::default();
        let health = Arc::new(Health::register(&mut registry, None, false));
        serve("127.0.0.1:0".parse().unwrap(), registry, health, auth).await.unwrap()
    }

    fn token_file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("arcadia-metrics-token-{name}-{}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[tokio::test]
    async fn metrics_need_the_token_and_the_probes_do_not() {
        let path = token_file("guarded", "s3cret-token\n");
        let addr = serve_with(MetricsAuth::BearerTokenFile(path.clone())).await;
        let (code, body) = get(addr, "/metrics", None).await;
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("www-authenticate: Bearer") && body.contains("Authorization: Bearer"), "{body}");
        assert_eq!(get(addr, "/metrics", Some("wrong")).await.0, 401);
        assert_eq!(get(addr, "/metrics", Some("s3cret-token-and-more")).await.0, 401);
        let (code, body) = get(addr, "/metrics", Some("s3cret-token")).await;
        assert_eq!(code, 200, "the file's trailing newline is trimmed: {body}");
        assert!(body.contains("leader"), "{body}");
        assert_eq!(get(addr, "/healthz", None).await.0, 200);
        // Starting: not ready, but answered without a token.
        assert_eq!(get(addr, "/readyz", None).await.0, 503);
        // A rotated token takes effect at the next scrape.
        std::fs::write(&path, "rotated").unwrap();
        assert_eq!(get(addr, "/metrics", Some("s3cret-token")).await.0, 401);
        assert_eq!(get(addr, "/metrics", Some("rotated")).await.0, 200);
        std::fs::remove_file(&path).unwrap();
        let (code, body) = get(addr, "/metrics", Some("rotated")).await;
        assert_eq!(code, 500, "a vanished token file admits no one: {body}");
    }

    #[tokio::test]
    async fn metrics_are_open_without_a_token_file() {
        let addr = serve_with(MetricsAuth::Open).await;
        assert_eq!(get(addr, "/metrics", None).await.0, 200);
    }

    #[tokio::test]
    async fn an_unreadable_or_empty_token_file_fails_at_start() {
        let serve_err = |auth| async move {
            let mut registry = Registry::default();
            let health = Arc::new(Health::register(&mut registry, None, false));
            serve("127.0.0.1:0".parse().unwrap(), registry, health, auth).await.unwrap_err().to_string()
        };
        let missing = std::env::temp_dir().join("arcadia-no-such-token-file");
        let err = serve_err(MetricsAuth::BearerTokenFile(missing.clone())).await;
        assert!(err.starts_with(&format!("cannot read the metrics token file {}: ", missing.display())), "{err}");
        let empty = token_file("empty", " \n");
        let err = serve_err(MetricsAuth::BearerTokenFile(empty.clone())).await;
        assert!(err.contains("is empty: /metrics would accept no token"), "{err}");
        std::fs::remove_file(empty).unwrap();
    }

    #[test]
    fn tokens_compare_by_every_byte() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab") && !constant_time_eq(b"", b"a"));
    }
}
