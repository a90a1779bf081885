//! Prometheus metrics: the recorder (installed once per process), the per-request middleware
//! and the router of the private metrics listener.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Upper bounds of the request latency histogram, in seconds: fine-grained below a
/// millisecond, where redirects live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder on first use and returns its handle. Later calls (another
/// server in the same test process) get the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .expect("non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; metrics are not exported"
                );
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!("http_requests_total", "HTTP requests by route and status");
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer a request, by route"
    );
    metrics::describe_counter!(
        "shortener_redirects_total",
        "Lookups of short codes by result"
    );
    metrics::describe_counter!("shortener_links_created_total", "Links created");
    metrics::describe_counter!(
        "shortener_create_batches_total",
        "Transactions that wrote new links (links created / batches = links per commit)"
    );
    metrics::describe_counter!(
        "shortener_cache_lookups_total",
        "Link cache lookups by result"
    );
    metrics::describe_counter!(
        "shortener_click_flushes_total",
        "Batches of click counts written"
    );
    metrics::describe_counter!(
        "shortener_clicks_flushed_total",
        "Clicks written to the database"
    );
    metrics::describe_counter!(
        "shortener_click_flush_failures_total",
        "Click batches that failed to write (kept and retried)"
    );
}

/// Middleware: counts requests and times them, labelled by the matched route template
/// (`/{code}`), never the raw path, so codes do not become time series.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_request_duration_seconds", "route" => route.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// The router of the metrics listener: `GET /metrics`.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(handle)
}

async fn render(State(handle): State<PrometheusHandle>) -> String {
    handle.render()
}
