//! What happens around every request, in one layer around the router: its request id, the
//! request timeout, metrics labelled by the route template, a debug span, and the log line of a
//! server-side failure (with the request id, so an operator can find it).
//!
//! It is one hand-written layer rather than a stack of tower-http ones because every layer is
//! work on the redirect path, and it sits around the router, not on each route, because axum
//! clones and boxes a route's layers for every request. The route template, the only label
//! metrics and logs may use (never the raw path: codes would become time series and land in
//! logs), comes from [`RouteLabel::for_path`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use quanta::Instant;
use tower::{Layer, Service};
use tracing::Span;

use crate::error::{ApiError, AppError, Failure, PageError};
use crate::metrics::{self, MethodLabel, RouteLabel};

/// The request id header, read from the client (or a proxy) and sent back on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client; longer ones are replaced by our own.
const MAX_REQUEST_ID: usize = 64;

/// The [`Layer`] of [`Track`]. Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct TrackLayer(Arc<Shared>);

struct Shared {
    timeout: Duration,
    /// True once the instance is stopping: answers then ask clients to reconnect (to another
    /// instance, through the balancer) rather than reuse a connection about to close.
    draining: Arc<AtomicBool>,
    /// A random per-process prefix of generated request ids.
    prefix: u32,
    /// The counter of generated request ids.
    next_id: AtomicU64,
}

impl TrackLayer {
    /// Requests taking longer than `timeout` are answered 503; once `draining` is set, every
    /// answer carries `Connection: close`.
    pub fn new(timeout: Duration, draining: Arc<AtomicBool>) -> Self {
        use std::hash::BuildHasher;
        // Different on every start and every instance, from the OS's randomness; unlike a
        // UUID per request, a counter costs no system call on the redirect path.
        let prefix = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Self(Arc::new(Shared {
            timeout,
            draining,
            prefix: prefix as u32,
            next_id: AtomicU64::new(0),
        }))
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            shared: self.0.clone(),
        }
    }
}

/// See the [module documentation](self).
#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = RouteLabel::for_path(request.uri().path());
        let method = MethodLabel::of(request.method());
        let request_id = match request.headers().get(REQUEST_ID) {
            Some(id) if is_usable_id(id) => id.clone(),
            _ => self.new_request_id(),
        };
        let span = tracing::debug_span!(
            "request",
            method = method.as_str(),
            route = route.as_str(),
            request_id = ?request_id
        );
        TrackFuture {
            inner: self.inner.call(request),
            timeout: self.shared.timeout,
            timer: None,
            close: self.shared.draining.load(Ordering::Relaxed),
            span,
            started: Instant::now(),
            route,
            method,
            request_id: Some(request_id),
        }
    }
}

impl<S> Track<S> {
    /// `PREFIX-COUNTER` in hex, formatted by hand: `format!` is a measurable part of a redirect.
    fn new_request_id(&self) -> HeaderValue {
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 8 + 1 + 16];
        let mut len = hex(u64::from(self.shared.prefix), 8, &mut buf);
        buf[len] = b'-';
        len += 1;
        len += hex(n, 1, &mut buf[len..]);
        HeaderValue::from_bytes(&buf[..len]).expect("hex digits are a valid header value")
    }
}

/// Writes `n` in lowercase hex, at least `min_digits` long, to the start of `out`; returns
/// the number of bytes written.
fn hex(n: u64, min_digits: usize, out: &mut [u8]) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (16 - n.leading_zeros() as usize / 4).max(min_digits);
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = DIGITS[((n >> shift) & 0xf) as usize];
    }
    digits
}

/// A client's request id is kept if it is short and printable (it goes into logs).
fn is_usable_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(|b| b.is_ascii_graphic())
}

pin_project! {
    /// The response future of [`Track`].
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        timeout: Duration,
        // Made only once the request first has to wait: most redirects never do, and a
        // timer costs (a clock read, a runtime lookup, a registration) on every request it
        // is made for.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        span: Span,
        // The instance was stopping when the request arrived.
        close: bool,
        // `quanta`'s clock, as the link cache's: two reads on every request.
        started: Instant,
        route: RouteLabel,
        method: MethodLabel,
        request_id: Option<HeaderValue>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                let (started, timeout) = (*this.started, *this.timeout);
                let timer = this.timer.get_or_insert_with(|| {
                    let left = timeout.saturating_sub(started.elapsed());
                    Box::pin(tokio::time::sleep(left))
                });
                ready!(timer.as_mut().poll(cx));
                timed_out(this.route.as_str())
            }
        };
        let status = response.status();
        let elapsed = this.started.elapsed();
        metrics::record_request(*this.route, *this.method, status, elapsed);
        if let Some(failure) = response.extensions_mut().remove::<Failure>() {
            let request_id = this
                .request_id
                .as_ref()
                .map(|id| id.to_str().unwrap_or("-"));
            failure.log(this.route.as_str(), status, request_id.unwrap_or("-"));
        }
        tracing::debug!(status = status.as_u16(), latency = ?elapsed, "answered");
        let headers = response.headers_mut();
        if let Some(id) = this.request_id.take() {
            headers.insert(REQUEST_ID, id);
        }
        // Browsers must not guess content types (a stored link shown as HTML, say).
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if *this.close {
            // hyper closes the connection after this answer; a balancer's next request goes
            // on a fresh connection, to an instance that is not stopping.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}

/// The answer to a request that ran out of time: JSON under `/api`, a page elsewhere.
fn timed_out(route: &str) -> Response {
    if route.starts_with("/api") {
        ApiError(AppError::Timeout).into_response()
    } else {
        PageError(AppError::Timeout).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_prefix_and_counter_in_hex() {
        let track = TrackLayer::new(Duration::from_secs(1), Arc::default()).layer(());
        let prefix = format!("{:08x}", track.shared.prefix);
        assert_eq!(track.new_request_id(), format!("{prefix}-0").as_str());
        for _ in 0..0x1a {
            track.new_request_id();
        }
        assert_eq!(track.new_request_id(), format!("{prefix}-1b").as_str());
        let mut buf = [0u8; 16];
        let n = hex(u64::MAX, 1, &mut buf);
        assert_eq!(&buf[..n], b"ffffffffffffffff");
        assert_eq!(hex(0, 8, &mut buf), 8);
        assert_eq!(&buf[..8], b"00000000");
    }

    #[test]
    fn only_short_printable_client_ids_are_kept() {
        assert!(is_usable_id(&HeaderValue::from_static("req-42")));
        assert!(!is_usable_id(&HeaderValue::from_static("")));
        assert!(!is_usable_id(&HeaderValue::from_static("has space")));
        let long = "a".repeat(MAX_REQUEST_ID + 1);
        assert!(!is_usable_id(&HeaderValue::from_str(&long).unwrap()));
    }
}
