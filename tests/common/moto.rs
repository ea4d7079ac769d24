//! moto, the AWS mock nobody here wrote, as the tests' EC2: installed from
//! PyPI into a virtual environment the tests create with `scripts/build-tools
//! moto` (once, under the tools cache, keyed by version), and started on a loopback port per test. In
//! front of it, an optional proxy counts each request by its EC2 action and
//! answers the next ones of an action with a throttling error, as EC2 does.

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The moto release the tests run (scripts/versions.sh says the same; a test checks).
pub const MOTO_VERSION: &str = "5.2.5";

/// The environment of a controller process on moto: fixed credentials (moto accepts any).
pub const CREDENTIALS: [(&str, &str); 3] =
    [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")];

fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ARCADIA_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME is not set")).join(".cache"));
    base.join("arcadia-drift")
}

/// `moto_server`, installed on first use by `scripts/build-tools moto`.
/// Panics with pip's words when it cannot be.
pub fn moto_server() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let server = cache_dir().join(format!("moto-{MOTO_VERSION}/bin/moto_server"));
        let out = Command::new(super::repo_root().join("scripts/build-tools"))
            .arg("moto")
            .output()
            .expect("cannot run scripts/build-tools");
        assert!(
            out.status.success() && server.is_file(),
            "cannot install moto {MOTO_VERSION} (python3 with venv and pip, and PyPI, are needed):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        server
    })
}

/// A moto server of the test's own, stopped when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
    pub port: u16,
    log: PathBuf,
}

impl Moto {
    pub async fn start() -> Moto {
        let server = moto_server();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("arcadia-moto-{port}.log"));
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start moto_server");
        let moto = Moto { child, url: format!("http://127.0.0.1:{port}"), port, log: log.clone() };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 60s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    /// An EC2 client on this moto: the console, as a person would use it.
    pub async fn console(&self, region: &str) -> aws_sdk_ec2::Client {
        console(&self.url, region).await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub async fn console(url: &str, region: &str) -> aws_sdk_ec2::Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(region.to_owned()))
        .credentials_provider(credentials())
        .endpoint_url(url)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

/// The credentials moto accepts, for a client built in the test process.
pub fn credentials() -> aws_sdk_ec2::config::Credentials {
    aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "tests")
}

/// A credentials provider that finds none, as the standard chain does on a
/// machine with no AWS identity.
#[derive(Debug)]
pub struct NoCredentials;

impl aws_sdk_ec2::config::ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded("no identity on this machine"),
        ))
    }
}

#[derive(Default)]
struct Counts {
    /// Requests seen per EC2 action.
    seen: BTreeMap<String, u64>,
    /// Requests of an action still to be answered with `RequestLimitExceeded`.
    throttle: BTreeMap<String, u64>,
    /// Requests of an action still to be refused with this error code (HTTP 403 or 400), never forwarded.
    refuse: BTreeMap<String, (u64, String)>,
    /// Requests of an action still to be carried out by moto with the answer held back this long.
    hold: BTreeMap<String, (u64, Duration)>,
}

/// What the proxy does with one request.
enum Fate {
    Forward,
    Throttle,
    Refuse(String),
    ForwardAndHold(Duration),
}

impl Counts {
    fn fate(&mut self, action: &str) -> Fate {
        *self.seen.entry(action.to_owned()).or_default() += 1;
        if let Some(n) = self.throttle.get_mut(action).filter(|n| **n > 0) {
            *n -= 1;
            return Fate::Throttle;
        }
        if let Some((n, code)) = self.refuse.get_mut(action).filter(|(n, _)| *n > 0) {
            *n -= 1;
            return Fate::Refuse(code.clone());
        }
        if let Some((n, hold)) = self.hold.get_mut(action).filter(|(n, _)| *n > 0) {
            *n -= 1;
            return Fate::ForwardAndHold(*hold);
        }
        Fate::Forward
    }
}

/// EC2's documented error shape for the Query API.
fn ec2_error(status: http::StatusCode, code: &str, message: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>proxy</RequestID></Response>"
    );
    (status, [(http::header::CONTENT_TYPE, "text/xml")], xml).into_response()
}

/// A proxy in front of moto that counts requests by action and throttles on demand.
#[derive(Clone)]
pub struct CountingProxy {
    pub url: String,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Clone)]
struct Upstream {
    url: String,
    counts: Arc<Mutex<Counts>>,
    http: reqwest_like::Client,
}

mod reqwest_like {
    //! The smallest HTTP/1 client that forwards a request to moto.
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client as Legacy;
    use hyper_util::rt::TokioExecutor;

    #[derive(Clone)]
    pub struct Client(Legacy<hyper_util::client::legacy::connect::HttpConnector, Full<bytes::Bytes>>);

    impl Client {
        pub fn new() -> Self {
            Client(Legacy::builder(TokioExecutor::new()).build_http())
        }

        pub async fn send(
            &self,
            request: http::Request<Full<bytes::Bytes>>,
        ) -> Result<(http::response::Parts, bytes::Bytes), String> {
            let answer = self.0.request(request).await.map_err(|e| e.to_string())?;
            let (parts, body) = answer.into_parts();
            let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok((parts, bytes))
        }
    }
}

impl CountingProxy {
    pub async fn start(moto: &Moto) -> CountingProxy {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let upstream = Upstream { url: moto.url.clone(), counts: counts.clone(), http: reqwest_like::Client::new() };
        let app = Router::new().fallback(forward).with_state(upstream);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        CountingProxy { url: format!("http://127.0.0.1:{port}"), counts }
    }

    /// Requests seen of `action` (throttled ones included).
    pub fn seen(&self, action: &str) -> u64 {
        self.counts.lock().unwrap().seen.get(action).copied().unwrap_or(0)
    }

    /// Every action seen, with its count.
    pub fn all_seen(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap().seen.clone()
    }

    /// Answers the next `n` requests of `action` with EC2's throttling error.
    pub fn throttle(&self, action: &str, n: u64) {
        self.counts.lock().unwrap().throttle.insert(action.to_owned(), n);
    }

    /// Refuses the next request of `action` with `code` (`UnauthorizedOperation`: 403; else 400), never forwarding it.
    pub fn refuse_next(&self, action: &str, code: &str) {
        self.counts.lock().unwrap().refuse.insert(action.to_owned(), (1, code.to_owned()));
    }

    /// Lets moto carry out the next request of `action`, then holds its answer back for `hold`:
    /// the answer lost after the effect happened.
    pub fn hold_next_answer(&self, action: &str, hold: Duration) {
        self.counts.lock().unwrap().hold.insert(action.to_owned(), (1, hold));
    }
}

/// The EC2 action of a Query API request (`Action=...` in its form body).
fn action_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split('&').find_map(|p| p.strip_prefix("Action=")).unwrap_or("").to_owned()
}

async fn forward(State(up): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let action = action_of(&bytes);
    let fate = up.counts.lock().unwrap().fate(&action);
    let hold = match fate {
        Fate::Throttle => {
            return ec2_error(http::StatusCode::SERVICE_UNAVAILABLE, "RequestLimitExceeded", "Request limit exceeded.");
        }
        Fate::Refuse(code) => {
            let forbidden = code == "UnauthorizedOperation";
            let status = if forbidden { http::StatusCode::FORBIDDEN } else { http::StatusCode::BAD_REQUEST };
            return ec2_error(status, &code, "refused by the test");
        }
        Fate::ForwardAndHold(hold) => Some(hold),
        Fate::Forward => None,
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let mut upstream = http::Request::builder().method(parts.method).uri(format!("{}{path}", up.url));
    for (name, value) in &parts.headers {
        upstream = upstream.header(name, value);
    }
    let upstream = upstream.body(http_body_util::Full::new(bytes)).unwrap();
    let answer = up.http.send(upstream).await;
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    match answer {
        Ok((parts, body)) => Response::from_parts(parts, axum::body::Body::from(body)),
        Err(e) => (http::StatusCode::BAD_GATEWAY, e).into_response(),
    }
}
