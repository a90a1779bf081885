//! Logging: readable text or JSON lines, filtered by `RUST_LOG`, and the span of each request.

use std::hash::BuildHasher;
use std::io::IsTerminal;

use axum::extract::MatchedPath;
use axum::http::Request;
use tracing::Span;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Default filter: `info`, without the server notices sqlx relays from Postgres ("relation
/// already exists, skipping" at every start).
const DEFAULT_FILTER: &str = "info,sqlx::postgres::notice=warn";

/// Installs the global subscriber. Default filter: [`DEFAULT_FILTER`].
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

/// The span of one request: method, matched route (not the raw path: codes and query strings
/// stay out of logs) and request id.
pub fn request_span<B>(request: &Request<B>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::debug_span!("request", method = %request.method(), route, request_id)
}

/// Request ids for requests that arrive without one: a random per-process prefix and a
/// counter. Unique enough to find a request in the logs, and unlike a UUID they cost no
/// system call for randomness on the redirect path.
#[derive(Clone)]
pub struct RequestIds(std::sync::Arc<RequestIdState>);

/// State shared by the clones of [`RequestIds`].
pub struct RequestIdState {
    prefix: u32,
    next: std::sync::atomic::AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        // Different on every start (and on every instance), from the OS's randomness.
        let prefix = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Self(std::sync::Arc::new(RequestIdState {
            prefix: prefix as u32,
            next: std::sync::atomic::AtomicU64::new(0),
        }))
    }
}

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(
        &mut self,
        _request: &Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let n = self
            .0
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{:08x}-{n:x}", self.0.prefix);
        axum::http::HeaderValue::try_from(id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}
