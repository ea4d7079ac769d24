//! EC2 through the official SDK: one client per region, every attempt
//! counted, every operation held to the request budget. Reads are retried by
//! the SDK's standard mode, which backs off on `RequestLimitExceeded` and
//! `Throttling`; writes are sent once, because only the saga knows whether a
//! write whose answer was lost may be sent again.

use crate::providers::contract::{ErrorClass, ProviderError};
use crate::runtime::ratelimit::Bucket;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{HttpClient, IntoShared, Region, RuntimeComponents, SharedHttpClient};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How the EC2 clients are built.
#[derive(Clone, Debug)]
pub struct AwsConfig {
    /// The regions of the one account this controller mirrors.
    pub regions: Vec<String>,
    /// Another endpoint than AWS's own (a VPC endpoint; moto in the tests).
    pub endpoint_url: Option<String>,
    /// The sustained operations per second this process allows itself.
    pub requests_per_second: f64,
    pub burst: f64,
    /// How long one operation may take, its retries included.
    pub timeout: Duration,
    /// Tries of a read, the first included (the SDK's standard retry mode).
    pub read_attempts: u32,
    /// The first backoff after a throttled or failed read.
    pub backoff: Duration,
    /// Items asked for per page of a listing (EC2 allows 5 to 1,000; volumes to 500).
    pub page_size: i32,
    /// Credentials from elsewhere than the standard chain (tools and tests; no flag sets them).
    pub credentials: Option<aws_sdk_ec2::config::SharedCredentialsProvider>,
}

impl AwsConfig {
    pub fn new(regions: Vec<String>) -> Self {
        Self {
            regions,
            endpoint_url: None,
            requests_per_second: 10.0,
            burst: 20.0,
            timeout: Duration::from_secs(20),
            read_attempts: 5,
            backoff: Duration::from_secs(1),
            page_size: 500,
            credentials: None,
        }
    }
}

/// One region's clients.
#[derive(Clone, Debug)]
pub struct RegionClient {
    pub name: String,
    /// Retried on throttling and on errors where nothing happened.
    pub reads: aws_sdk_ec2::Client,
    /// Sent once.
    pub writes: aws_sdk_ec2::Client,
}

/// EC2 in the regions of one account.
pub struct Ec2 {
    pub regions: Vec<RegionClient>,
    budget: Bucket,
    sent: Arc<AtomicU64>,
    pub config: AwsConfig,
}

impl Ec2 {
    /// Builds the clients, with credentials from the standard chain
    /// (environment, web identity for IRSA, EKS Pod Identity, profiles,
    /// instance metadata), resolved at the first request.
    pub async fn connect(config: AwsConfig) -> Result<Self, ProviderError> {
        if config.regions.is_empty() {
            return Err(refused("no AWS region to read: give --aws-regions"));
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http.clone());
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(credentials) = &config.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        let shared = loader.region(Region::new(config.regions[0].clone())).load().await;
        let sent = Arc::new(AtomicU64::new(0));
        let counting = Counting { inner: http.into_shared(), sent: sent.clone() };
        let timeouts = TimeoutConfig::builder().operation_timeout(config.timeout).build();
        let regions = config
            .regions
            .iter()
            .map(|name| {
                let base = aws_sdk_ec2::config::Builder::from(&shared)
                    .region(Region::new(name.clone()))
                    .http_client(counting.clone())
                    .timeout_config(timeouts.clone());
                let reads = RetryConfig::standard()
                    .with_max_attempts(config.read_attempts.max(1))
                    .with_initial_backoff(config.backoff);
                RegionClient {
                    name: name.clone(),
                    reads: aws_sdk_ec2::Client::from_conf(base.clone().retry_config(reads).build()),
                    writes: aws_sdk_ec2::Client::from_conf(base.retry_config(RetryConfig::disabled()).build()),
                }
            })
            .collect();
        let budget = Bucket::new(config.requests_per_second, config.burst);
        Ok(Self { regions, budget, sent, config })
    }

    /// The clients of `region`, or a refusal naming the configured ones.
    pub fn region(&self, region: &str) -> Result<&RegionClient, ProviderError> {
        self.regions.iter().find(|r| r.name == region).ok_or_else(|| {
            let known: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
            refused(&format!("region {region:?} is not one this controller reads ({})", known.join(", ")))
        })
    }

    /// Waits for the budget to allow one more operation.
    pub async fn permit(&self) {
        let wait = self.budget.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Attempts sent since start, every retry counted.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// A refusal before anything was sent.
pub fn refused(message: &str) -> ProviderError {
    ProviderError::refused("refused", message.to_owned())
}

/// The SDK's HTTP client, counting every attempt it sends.
#[derive(Clone, Debug)]
struct Counting {
    inner: SharedHttpClient,
    sent: Arc<AtomicU64>,
}

impl HttpClient for Counting {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(CountingConnector { inner, sent: self.sent.clone() })
    }
}

#[derive(Debug)]
struct CountingConnector {
    inner: SharedHttpConnector,
    sent: Arc<AtomicU64>,
}

impl HttpConnector for CountingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.inner.call(request)
    }
}

/// The error codes by which EC2 says "slow down" (its documented throttling codes).
const THROTTLING: [&str; 3] = ["RequestLimitExceeded", "Throttling", "ThrottlingException"];

/// Whether EC2 answered that the resource does not exist (`InvalidInstanceID.NotFound`, ...).
pub fn not_found<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    error.as_service_error().and_then(|e| e.code()).is_some_and(|c| c.ends_with(".NotFound"))
}

/// What a failed request means ([`ErrorClass`]), in words naming the
/// request: `request` is e.g. `DescribeInstances in us-east-1`. A `write`
/// whose answer was lost may have happened.
pub fn classify<E>(error: SdkError<E, HttpResponse>, request: &str, write: bool) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(why) = credentials_failure(&error) {
        // Resolved before anything is sent: nothing happened, and the chain may answer later.
        let message = format!(
            "EC2 {request}: no AWS credentials ({why}); give them through IRSA, EKS Pod Identity, AWS_* variables, a profile or instance metadata"
        );
        return ProviderError { class: ErrorClass::Transient, kind: "credentials", fenced: false, message };
    }
    let maybe_done = if write { ErrorClass::Unknown } else { ErrorClass::Transient };
    let (class, kind) = match &error {
        SdkError::ConstructionFailure(_) => (ErrorClass::Permanent, "refused"),
        SdkError::TimeoutError(_) => (maybe_done, "timeout"),
        SdkError::DispatchFailure(d) if d.is_user() => (ErrorClass::Permanent, "refused"),
        SdkError::DispatchFailure(d) if d.is_timeout() => (maybe_done, "timeout"),
        SdkError::DispatchFailure(_) => (maybe_done, "unreachable"),
        SdkError::ResponseError(_) => (maybe_done, "malformed"),
        SdkError::ServiceError(e) => service_class(e.err().code(), e.raw().status().as_u16(), maybe_done),
        _ => (maybe_done, "unknown"),
    };
    let words = match error.as_service_error() {
        Some(e) => format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or("no message")),
        None => causes(&error),
    };
    ProviderError { class, kind, fenced: false, message: format!("EC2 {request}: {words}") }
}

/// The credentials chain's failure inside `error`, in words, if that is what it is.
fn credentials_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<aws_credential_types::provider::error::CredentialsError>().is_some() {
            return Some(causes(e));
        }
        next = e.source();
    }
    None
}

/// An error and its sources, each in its own words: `a: b: c`.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut words = vec![error.to_string()];
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !words.last().is_some_and(|last| last.ends_with(&text)) {
            words.push(text);
        }
        next = e.source();
    }
    words.join(": ")
}

fn service_class(code: Option<&str>, status: u16, maybe_done: ErrorClass) -> (ErrorClass, &'static str) {
    match code {
        Some(c) if THROTTLING.contains(&c) => (ErrorClass::Transient, "rate_limited"),
        _ if status >= 500 => (maybe_done, "server_error"),
        Some("AuthFailure" | "UnauthorizedOperation" | "Blocked" | "OptInRequired") => {
            (ErrorClass::Permanent, "unauthorized")
        }
        _ if status == 401 || status == 403 => (ErrorClass::Permanent, "unauthorized"),
        _ => (ErrorClass::Permanent, "refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_transient_and_a_5xx_write_may_have_happened() {
        assert_eq!(service_class(Some("RequestLimitExceeded"), 503, ErrorClass::Unknown).0, ErrorClass::Transient);
        assert_eq!(service_class(Some("Throttling"), 400, ErrorClass::Unknown).0, ErrorClass::Transient);
        assert_eq!(service_class(Some("InternalError"), 500, ErrorClass::Unknown).0, ErrorClass::Unknown);
        assert_eq!(service_class(Some("InternalError"), 500, ErrorClass::Transient).0, ErrorClass::Transient);
        assert_eq!(service_class(Some("UnauthorizedOperation"), 403, ErrorClass::Unknown), (ErrorClass::Permanent, "unauthorized"));
        assert_eq!(service_class(Some("InvalidParameterValue"), 400, ErrorClass::Unknown), (ErrorClass::Permanent, "refused"));
    }
}
