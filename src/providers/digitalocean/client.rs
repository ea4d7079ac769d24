//! A small DigitalOcean API v2 client: Bearer auth, pagination as the API
//! documents it, a client-side request budget that stays under the account's
//! rate limit, and retries of 429s, 5xx and transport failures. The token never
//! appears in a log line, an error or a Debug print.

use crate::runtime::ratelimit::Bucket;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";
/// The largest page the API serves.
pub const PER_PAGE: u32 = 200;

/// The API token. Its Debug form is redacted so it cannot leak through logs.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a request failed. Each names the request (method and path, never the token).
#[derive(Debug, thiserror::Error)]
pub enum DoError {
    #[error("{request}: the DigitalOcean token is invalid or expired (401 {message})")]
    Unauthorized { request: String, message: String },
    #[error(
        "{request}: the DigitalOcean token lacks a scope this request needs (403 {message}); reads need scopes such as droplet:read, reverts the write scopes in docs/revert.md"
    )]
    Forbidden { request: String, message: String },
    #[error("{request}: still rate limited (429) after {attempts} attempts")]
    RateLimited { request: String, attempts: u32 },
    #[error("{request}: server error {status} after {attempts} attempts: {message}")]
    Server { request: String, status: u16, attempts: u32, message: String, write: bool },
    #[error("{request}: unexpected status {status}: {message}")]
    Status { request: String, status: u16, message: String },
    #[error("{request}: the response is not the documented JSON: {detail}")]
    Malformed { request: String, detail: String, write: bool },
    #[error("{request}: no answer after {attempts} attempts: {detail}")]
    Transport { request: String, attempts: u32, detail: String, write: bool },
    #[error("bad DigitalOcean API URL {url:?}: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("bad DigitalOcean API URL {url:?}: {source}")]
    BadPath { url: String, source: super::calls::BadPath },
    #[error("refused before sending: {0}")]
    NotPermitted(#[from] super::calls::NotARevertCall),
    #[error("{request}: not sent: this replica no longer holds the leader lease")]
    Fenced { request: String },
}

pub use crate::providers::contract::ErrorClass;

impl DoError {
    pub fn class(&self) -> ErrorClass {
        match self {
            DoError::Unauthorized { .. }
            | DoError::Forbidden { .. }
            | DoError::Status { .. }
            | DoError::BadUrl { .. }
            | DoError::BadPath { .. }
            | DoError::NotPermitted(_)
            | DoError::Fenced { .. } => ErrorClass::Permanent,
            DoError::RateLimited { .. } => ErrorClass::Transient,
            DoError::Server { write, .. } | DoError::Malformed { write, .. } | DoError::Transport { write, .. } => {
                if *write {
                    ErrorClass::Unknown
                } else {
                    ErrorClass::Transient
                }
            }
        }
    }

    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DoError::Unauthorized { .. } => "unauthorized",
            DoError::Forbidden { .. } => "forbidden",
            DoError::RateLimited { .. } => "rate_limited",
            DoError::Server { .. } => "server_error",
            DoError::Status { .. } => "status",
            DoError::Malformed { .. } => "malformed",
            DoError::Transport { .. } => "transport",
            DoError::BadUrl { .. } => "bad_url",
            DoError::BadPath { .. } => "bad_url",
            DoError::NotPermitted(_) => "not_permitted",
            DoError::Fenced { .. } => "fenced",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub api_url: String,
    pub token: Token,
    /// Sustained requests per second this client allows itself.
    pub requests_per_second: f64,
    pub burst: f64,
    pub timeout: Duration,
    pub max_attempts: u32,
    /// First retry delay of 5xx and transport failures; doubles each attempt, jittered.
    pub backoff: Duration,
    /// Longest `retry-after` honoured before giving up on a 429.
    pub max_retry_after: Duration,
}

impl ClientConfig {
    /// Defaults that stay well under the default 5,000 requests/hour and
    /// 250 requests/minute: at most 2,500 requests an hour on average.
    pub fn new(api_url: impl Into<String>, token: Token) -> Self {
        Self {
            api_url: api_url.into(),
            token,
            requests_per_second: 2500.0 / 3600.0,
            burst: 30.0,
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// The rate-limit headers of the last response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Unix time at which the oldest counted request expires.
    pub reset: Option<u64>,
}

pub struct DoClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: http::Uri,
    config: ClientConfig,
    budget: Bucket,
    last_limit: Mutex<RateLimit>,
    requests: AtomicU64,
}

/// A whole listing of one collection.
#[derive(Debug)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub requests: u32,
    /// Fewer distinct items than `meta.total` said: an item may have been
    /// missed because the account changed mid-listing, so an absence proves nothing.
    pub short: bool,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    pages: Option<Pages>,
}

#[derive(Deserialize)]
struct Pages {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Meta {
    total: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message: String,
}

impl DoClient {
    pub fn new(config: ClientConfig) -> Result<Self, DoError> {
        let bad = |detail: String| DoError::BadUrl { url: config.api_url.clone(), detail };
        let base: http::Uri = config.api_url.trim_end_matches('/').parse().map_err(|e| bad(format!("{e}")))?;
        if base.scheme().is_none() || base.authority().is_none() {
            return Err(bad("expected an absolute URL such as https://api.digitalocean.com".into()));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| bad(format!("no TLS root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        let budget = Bucket::new(config.requests_per_second, config.burst);
        Ok(Self { http, base, config, budget, last_limit: Mutex::default(), requests: AtomicU64::new(0) })
    }

    /// The sustained rate this client allows itself.
    pub fn requests_per_second(&self) -> f64 {
        self.config.requests_per_second
    }

    /// How long one request may take, answer included.
    pub fn timeout(&self) -> std::time::Duration {
        self.config.timeout
    }

    /// Requests sent so far, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn rate_limit(&self) -> RateLimit {
        *self.last_limit.lock().expect("rate limit lock poisoned")
    }

    /// Lists a whole collection, following `links.pages.next`. Items are
    /// de-duplicated by `id`, since offset paging can repeat one when the
    /// account changes between pages.
    pub async fn list<T: DeserializeOwned>(&self, path: &str, key: &str, query: &str) -> Result<Listing<T>, DoError> {
        let sep = if query.is_empty() { "" } else { "&" };
        let mut next = Some(format!("{path}?{query}{sep}per_page={PER_PAGE}"));
        let mut seen = HashSet::new();
        let mut items = Vec::new();
        let mut requests = 0;
        let mut total = None;
        while let Some(request) = next.take() {
            requests += 1;
            let body = self.get_ok(&request).await?;
            let malformed =
                |detail: String| DoError::Malformed { request: format!("GET {request}"), detail, write: false };
            let mut page: serde_json::Map<String, Value> =
                serde_json::from_slice(&body).map_err(|e| malformed(e.to_string()))?;
            let array = match page.remove(key) {
                Some(Value::Array(a)) => a,
                Some(other) => {
                    return Err(malformed(format!("`{key}` is {}, not a list", kind_of(&other))));
                }
                None => return Err(malformed(format!("no `{key}` list"))),
            };
            for raw in array {
                let id = match raw.get("id") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => return Err(malformed(format!("an item of `{key}` has no id"))),
                };
                if !seen.insert(id.clone()) {
                    continue;
                }
                let item = serde_json::from_value(raw).map_err(|e| malformed(format!("{key} item {id}: {e}")))?;
                items.push(item);
            }
            if let Some(meta) = page.get("meta") {
                let meta: Meta = serde_json::from_value(meta.clone()).map_err(|e| malformed(format!("meta: {e}")))?;
                total = meta.total.or(total);
            }
            if let Some(links) = page.get("links") {
                let links: Links =
                    serde_json::from_value(links.clone()).map_err(|e| malformed(format!("links: {e}")))?;
                next = links.pages.and_then(|p| p.next).map(|n| self.same_host_path(&n)).transpose()?;
            }
            if requests > 10_000 {
                return Err(malformed("more than 10,000 pages: the `next` links do not end".into()));
            }
        }
        let short = total.is_some_and(|t| (items.len() as u64) < t);
        Ok(Listing { items, requests, short })
    }

    /// The first page of a collection only (newest first, for feeds).
    pub async fn first_page<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        per_page: u32,
    ) -> Result<Vec<T>, DoError> {
        let request = format!("{path}?page=1&per_page={per_page}");
        let body = self.get_ok(&request).await?;
        let malformed = |detail: String| DoError::Malformed { request: format!("GET {request}"), detail, write: false };
        let mut page: serde_json::Map<String, Value> =
            serde_json::from_slice(&body).map_err(|e| malformed(e.to_string()))?;
        match page.remove(key) {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| serde_json::from_value(item).map_err(|e| malformed(format!("{key} item: {e}"))))
                .collect(),
            Some(other) => Err(malformed(format!("`{key}` is {}, not a list", kind_of(&other)))),
            None => Err(malformed(format!("no `{key}` list"))),
        }
    }

    /// GETs one object; `None` on 404.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, key: &str) -> Result<Option<T>, DoError> {
        match self.get_ok(path).await {
            Ok(body) => {
                let malformed =
                    |detail: String| DoError::Malformed { request: format!("GET {path}"), detail, write: false };
                let mut value: serde_json::Map<String, Value> =
                    serde_json::from_slice(&body).map_err(|e| malformed(e.to_string()))?;
                let item = value.remove(key).ok_or_else(|| malformed(format!("no `{key}` object")))?;
                serde_json::from_value(item).map(Some).map_err(|e| malformed(e.to_string()))
            }
            Err(DoError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `next` links are absolute URLs of the public API; keep only their path
    /// and query, so a client pointed elsewhere (a proxy, a test fake) stays there.
    fn same_host_path(&self, next: &str) -> Result<String, DoError> {
        let uri: http::Uri = next.parse().map_err(|e| DoError::Malformed {
            request: next.to_owned(),
            detail: format!("links.pages.next is not a URL: {e}"),
            write: false,
        })?;
        Ok(uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into()))
    }

    /// GET with the budget, retries and error mapping; the body of a 2xx.
    async fn get_ok(&self, path: &str) -> Result<Bytes, DoError> {
        self.send(Method::GET, path, None, &|| true).await
    }

    /// Sends a write (`POST`, `PUT`, `DELETE`) with a JSON body; the body of
    /// the 2xx answer (empty for 204). A write is retried only on 429, which
    /// the API answers before doing anything. Only the shapes a revert plan
    /// is made of are sent ([`super::calls::permitted`]).
    /// `fence` is asked after the wait for the budget, right before each try leaves.
    pub async fn write(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        fence: &(dyn Fn() -> bool + Sync),
    ) -> Result<Bytes, DoError> {
        super::calls::permitted(method, path)?;
        let method: Method = method
            .parse()
            .map_err(|_| DoError::BadUrl { url: path.into(), detail: format!("{method} is not an HTTP method") })?;
        let body = (!body.is_null()).then(|| Bytes::from(body.to_string()));
        self.send(method, path, body, fence).await
    }

    /// One request with the budget, retries and error mapping; the body of a 2xx.
    /// A loop rather than `backon`: a write is tried again only on an answer
    /// that proves it was not carried out, a 429 waits its own retry-after,
    /// and each error says how many tries it took; here the three read together.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        fence: &(dyn Fn() -> bool + Sync),
    ) -> Result<Bytes, DoError> {
        let max = self.config.max_attempts.max(1);
        let idempotent = method == Method::GET;
        let request = &format!("{method} {path}");
        let uri = super::calls::url(&self.base, path).map_err(|source| DoError::BadPath { url: path.into(), source })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.wait_for_budget().await;
            if !fence() {
                return Err(DoError::Fenced { request: request.into() });
            }
            let outcome = self.send_once(&method, &uri, body.clone()).await;
            let retry_in = match outcome {
                Ok((status, _, body)) if status.is_success() => return Ok(body),
                Ok((status, headers, body)) => {
                    let message = error_message(&body);
                    match status.as_u16() {
                        401 => {
                            return Err(DoError::Unauthorized { request: request.into(), message });
                        }
                        403 => {
                            return Err(DoError::Forbidden { request: request.into(), message });
                        }
                        429 if attempt < max => {
                            let wait = retry_after(&headers).unwrap_or(self.config.backoff);
                            if wait > self.config.max_retry_after {
                                return Err(DoError::RateLimited { request: request.into(), attempts: attempt });
                            }
                            wait
                        }
                        429 => {
                            return Err(DoError::RateLimited { request: request.into(), attempts: attempt });
                        }
                        code @ 500..=599 if attempt < max && idempotent => {
                            tracing::debug!(request, code, attempt, "DigitalOcean server error; retrying");
                            self.backoff(attempt)
                        }
                        code @ 500..=599 => {
                            return Err(DoError::Server {
                                request: request.into(),
                                status: code,
                                attempts: attempt,
                                message,
                                write: !idempotent,
                            });
                        }
                        code => {
                            return Err(DoError::Status { request: request.into(), status: code, message });
                        }
                    }
                }
                Err(detail) if attempt < max && idempotent => {
                    tracing::debug!(request, attempt, %detail, "DigitalOcean request failed; retrying");
                    self.backoff(attempt)
                }
                Err(detail) => {
                    let write = !idempotent;
                    return Err(DoError::Transport { request: request.into(), attempts: attempt, detail, write });
                }
            };
            tokio::time::sleep(retry_in).await;
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        uri: &http::Uri,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.config.token.0))
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("arcadia-drift/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req =
            req.body(Full::new(body.unwrap_or_default())).map_err(|e| format!("cannot build the request: {e}"))?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            let response = self.http.request(req).await.map_err(|e| format!("{e}"))?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| format!("reading the body: {e}"))?.to_bytes();
            Ok::<_, String>((parts.status, parts.headers, body))
        };
        let (status, headers, body) = tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| format!("timed out after {:?}", self.config.timeout))??;
        self.note_rate_limit(&headers);
        Ok((status, headers, body))
    }

    fn note_rate_limit(&self, headers: &HeaderMap) {
        // http's HeaderMap matches names case-insensitively.
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        let seen = RateLimit {
            limit: number("ratelimit-limit"),
            remaining: number("ratelimit-remaining"),
            reset: number("ratelimit-reset"),
        };
        if seen != RateLimit::default() {
            *self.last_limit.lock().expect("rate limit lock poisoned") = seen;
        }
    }

    /// Waits for the client-side budget, and when the server says less than a
    /// tenth of the account's limit remains, until its reset.
    async fn wait_for_budget(&self) {
        let wait = self.budget.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let limit = self.rate_limit();
        if let (Some(limit), Some(remaining), Some(reset)) = (limit.limit, limit.remaining, limit.reset)
            && remaining <= limit / 10
        {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            let pause = Duration::from_secs(reset.saturating_sub(now).min(self.config.max_retry_after.as_secs()));
            if !pause.is_zero() {
                tracing::info!(remaining, limit, "near the DigitalOcean rate limit; pausing {}s", pause.as_secs());
                tokio::time::sleep(pause).await;
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.backoff.mul_f64(2f64.powi(attempt.saturating_sub(1) as i32));
        let nanos = Instant::now().elapsed().subsec_nanos()
            ^ SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        base.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The API's error body is `{id, message, request_id}`; anything else is shown truncated.
fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) if !e.message.is_empty() => format!("{}: {}", e.id, e.message),
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_prints() {
        let config = ClientConfig::new(DEFAULT_API_URL, Token::new("dop_v1_secret"));
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn error_bodies_read_as_documented() {
        let body = br#"{"id":"unauthorized","message":"Unable to authenticate you.","request_id":"4d9d8375"}"#;
        assert_eq!(error_message(body), "unauthorized: Unable to authenticate you.");
        assert_eq!(error_message(b"<html>bad gateway</html>"), "<html>bad gateway</html>");
    }

    #[test]
    fn retry_after_is_seconds() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }
}
