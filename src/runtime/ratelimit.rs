//! Client-side request budgets: a token bucket (as client-go's QPS and burst),
//! used directly by a provider's client and as a tower layer under kube's client.
//! Kept rather than `governor`: a caller reserves the next free slot (tokens go
//! negative) and sleeps once, so waiting callers go in the order they came;
//! governor's `until_ready` checks again after each wait, with no such order.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

#[derive(Clone)]
pub struct RateLimitLayer {
    bucket: Arc<Bucket>,
}

pub struct Bucket {
    per_second: f64,
    burst: f64,
    /// Tokens available and when that was computed; tokens may go negative,
    /// which is the queue of callers already promised a later slot.
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub fn new(per_second: f64, burst: f64) -> Self {
        let per_second = per_second.max(0.001);
        let burst = burst.max(1.0);
        Self { per_second, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Takes one token and says how long to wait for it.
    pub fn reserve(&self) -> Duration {
        let mut state = self.state.lock().expect("rate limiter lock poisoned");
        let now = Instant::now();
        let (tokens, at) = *state;
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * self.per_second).min(self.burst) - 1.0;
        *state = (tokens, now);
        if tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-tokens / self.per_second) }
    }
}

impl RateLimitLayer {
    pub fn new(per_second: f32, burst: u32) -> Self {
        let per_second = f64::from(per_second).max(0.001);
        let burst = f64::from(burst.max(1));
        Self { bucket: Arc::new(Bucket { per_second, burst, state: Mutex::new((burst, Instant::now())) }) }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimited { inner, bucket: self.bucket.clone() }
    }
}

pub struct RateLimited<S> {
    inner: S,
    bucket: Arc<Bucket>,
}

impl<S, R> Service<R> for RateLimited<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let wait = self.bucket.reserve();
        // The request is only sent when the inner future is first polled, after the wait.
        let response = self.inner.call(request);
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            response.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_free_then_requests_are_spaced() {
        let layer = RateLimitLayer::new(10.0, 3);
        let waits: Vec<Duration> = (0..5).map(|_| layer.bucket.reserve()).collect();
        assert!(waits[..3].iter().all(|w| w.is_zero()), "{waits:?}");
        assert!(waits[3] > Duration::from_millis(80) && waits[3] <= Duration::from_millis(100), "{waits:?}");
        assert!(waits[4] > Duration::from_millis(180) && waits[4] <= Duration::from_millis(200), "{waits:?}");
    }
}
