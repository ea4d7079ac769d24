//! A proxy between a controller and the API server that holds back the
//! events of one kind's watches: a watch that lags behind the API server, as
//! after a hiccup with thousands of objects to relist. Everything else passes
//! through at once. It speaks plain HTTP on loopback to the controller and
//! reaches the API server through a kube client (its TLS and token).

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct LaggingProxy {
    pub port: u16,
    /// How long each event of a lagged watch is held back, from when it arrived.
    pub lag: Arc<Mutex<Duration>>,
}

#[derive(Clone)]
struct Shared {
    client: kube::Client,
    /// A path fragment naming the lagged kind (`cloudprovisioneds`).
    lagged: &'static str,
    lag: Arc<Mutex<Duration>>,
}

impl LaggingProxy {
    pub async fn start(client: kube::Client, lagged: &'static str) -> Self {
        let lag = Arc::new(Mutex::new(Duration::ZERO));
        let shared = Shared { client, lagged, lag: lag.clone() };
        let app = Router::new().fallback(forward).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        LaggingProxy { port, lag }
    }

    /// A kubeconfig that reaches the API server through this proxy.
    pub fn kubeconfig(&self) -> PathBuf {
        let path = std::env::temp_dir().join(format!("arcadia-lagging-{}.kubeconfig", self.port));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lagging\n  cluster:\n    server: http://127.0.0.1:{}\nusers:\n- name: proxy\n  user:\n    token: via-proxy\ncontexts:\n- name: lagging\n  context: {{cluster: lagging, user: proxy}}\ncurrent-context: lagging\n",
            self.port
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

async fn forward(State(s): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let mut upstream = http::Request::builder().method(parts.method.clone()).uri(&path);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::AUTHORIZATION {
            upstream = upstream.header(name, value);
        }
    }
    let upstream = upstream.body(kube::client::Body::from(bytes)).unwrap();
    let answer = match s.client.send(upstream).await {
        Ok(answer) => answer,
        Err(e) => return (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let (parts, body) = answer.into_parts();
    let lagged = path.contains(s.lagged) && (path.contains("watch=true") || path.contains("watch=1"));
    let body = if lagged { held_back(body, s.lag.clone()) } else { Body::new(body) };
    Response::from_parts(parts, body)
}

/// The body's frames, each released `lag` after it arrived.
fn held_back(mut body: kube::client::Body, lag: Arc<Mutex<Duration>>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Bytes)>();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                let release = tokio::time::Instant::now() + *lag.lock().unwrap();
                if tx.send((release, data)).is_err() {
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let (release, data) = rx.recv().await?;
        tokio::time::sleep_until(release).await;
        Some((Ok::<_, std::io::Error>(data), rx))
    });
    Body::from_stream(stream)
}
