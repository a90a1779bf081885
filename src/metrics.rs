//! Prometheus metrics: the recorder (installed once per process), the per-request middleware
//! and the router of the private metrics listener.

use std::sync::{LazyLock, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
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
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = status_label(response.status());
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

// Labels as `&'static str`, so the redirect path allocates nothing to count itself.

/// The route templates of [`crate::routes`], as static labels. A template missing here is
/// counted as `other` (the metrics test checks the main ones).
const ROUTES: &[&str] = &[
    "/{code}",
    "/",
    "/api/v1/links",
    "/api/v1/links/{code}",
    "/api/v1/openapi.json",
    "/healthz",
    "/readyz",
    "/static/app.css",
    "/static/app.js",
    "/robots.txt",
    "/favicon.ico",
    "/api",
    "/api/{*rest}",
];

fn route_label(path: Option<&MatchedPath>) -> &'static str {
    let Some(path) = path.map(MatchedPath::as_str) else {
        return "unmatched";
    };
    ROUTES
        .iter()
        .copied()
        .find(|r| *r == path)
        .unwrap_or("other")
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Status codes as static labels, built once.
fn status_label(status: StatusCode) -> &'static str {
    static LABELS: LazyLock<Vec<String>> =
        LazyLock::new(|| (0..1000).map(|code: u16| code.to_string()).collect());
    LABELS[usize::from(status.as_u16()).min(999)].as_str()
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

#[cfg(test)]
mod tests {
    use super::ROUTES;

    /// Every `.route("...")` the routers declare has its static label, so no route is
    /// counted as `other`.
    #[test]
    fn every_declared_route_has_a_label() {
        for (source, prefix) in [
            (include_str!("routes/mod.rs"), ""),
            (include_str!("routes/api.rs"), "/api/v1"),
        ] {
            for declared in source.split(".route(\"").skip(1) {
                let path = &declared[..declared.find('"').expect("closing quote")];
                let template = format!("{prefix}{path}");
                assert!(
                    ROUTES.contains(&template.as_str()),
                    "{template} is missing from ROUTES"
                );
            }
        }
    }
}
