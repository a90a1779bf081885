//! Prometheus metrics: the recorder (installed once per process), the handles the redirect
//! path counts with, request counting by route template, and the router of the private
//! metrics listener.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use metrics::{Counter, Histogram};
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
            // Registered after the recorder, or they would be no-ops for good.
            let _ = HOT.set(Hot::register());
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
        "shortener_rate_limited_total",
        "Requests refused with 429, by limit (create, not_found)"
    );
    metrics::describe_counter!(
        "shortener_click_flush_failures_total",
        "Click batches that failed to write (kept and retried)"
    );
}

/// Counts one answered request and its latency, labelled by the matched route template
/// (`/{code}`), never the raw path, so codes do not become time series.
pub fn record_request(route: RouteLabel, method: MethodLabel, status: StatusCode, took: Duration) {
    let Some(hot) = HOT.get() else {
        return; // no recorder in this process: nothing would be exported
    };
    hot.durations[usize::from(route.0)].record(took.as_secs_f64());
    let key = (route.0, method.0, status.as_u16());
    REQUESTS.with_borrow_mut(|counters| {
        counters
            .entry(key)
            .or_insert_with(|| {
                let (method, route) = (METHODS[usize::from(key.1)], ROUTE_LABELS[usize::from(key.0)]);
                metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status_label(status))
            })
            .increment(1);
    });
}

thread_local! {
    /// Each worker thread's handles of `http_requests_total`, by route, method and status:
    /// after the first request of a kind, counting it is an atomic add, with no registry
    /// lookup, no lock shared between threads and no allocation.
    static REQUESTS: std::cell::RefCell<HashMap<(u8, u8, u16), Counter, foldhash::fast::RandomState>> =
        std::cell::RefCell::new(HashMap::default());
}

/// Handles of the counters on the redirect path, registered once with the recorder.
pub struct Hot {
    /// `shortener_cache_lookups_total{result="hit"}`.
    pub cache_hit: Counter,
    /// `shortener_cache_lookups_total{result="negative_hit"}`.
    pub cache_negative_hit: Counter,
    /// `shortener_cache_lookups_total{result="miss"}`.
    pub cache_miss: Counter,
    /// `shortener_redirects_total{result="found"}`.
    pub redirect_found: Counter,
    /// `shortener_redirects_total{result="not_found"}`.
    pub redirect_not_found: Counter,
    /// `shortener_redirects_total{result="gone"}`.
    pub redirect_gone: Counter,
    /// `http_request_duration_seconds`, by route label index.
    durations: Vec<Histogram>,
}

impl Hot {
    fn register() -> Self {
        let cache = |result: &'static str| metrics::counter!("shortener_cache_lookups_total", "result" => result);
        let redirects = |result: &'static str| metrics::counter!("shortener_redirects_total", "result" => result);
        Self {
            cache_hit: cache("hit"),
            cache_negative_hit: cache("negative_hit"),
            cache_miss: cache("miss"),
            redirect_found: redirects("found"),
            redirect_not_found: redirects("not_found"),
            redirect_gone: redirects("gone"),
            durations: ROUTE_LABELS
                .iter()
                .map(
                    |route| metrics::histogram!("http_request_duration_seconds", "route" => *route),
                )
                .collect(),
        }
    }

    fn noop() -> Self {
        Self {
            cache_hit: Counter::noop(),
            cache_negative_hit: Counter::noop(),
            cache_miss: Counter::noop(),
            redirect_found: Counter::noop(),
            redirect_not_found: Counter::noop(),
            redirect_gone: Counter::noop(),
            durations: Vec::new(),
        }
    }
}

static HOT: OnceLock<Hot> = OnceLock::new();

/// The redirect path's counters; no-ops until [`install`] has run.
pub fn hot() -> &'static Hot {
    static NOOP: LazyLock<Hot> = LazyLock::new(Hot::noop);
    HOT.get().unwrap_or(&NOOP)
}

/// The route templates of [`crate::routes`], then `unmatched` (no route: the fallback). The
/// tests below keep the list the same as the routes declared.
const ROUTE_LABELS: &[&str] = &[
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
    "unmatched",
];

/// A route template, as an index into `ROUTE_LABELS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteLabel(u8);

/// Index of `unmatched` in [`ROUTE_LABELS`].
const UNMATCHED: u8 = ROUTE_LABELS.len() as u8 - 1;

impl RouteLabel {
    /// The template of the route that answers `path`, found with the router axum itself uses
    /// (`matchit`) over the same templates, so it agrees with axum's routing. Matching
    /// here, in the request layer around the router, spares every request the cost of a
    /// layer on each route (which axum clones and boxes per request).
    pub fn for_path(path: &str) -> Self {
        static TEMPLATES: LazyLock<matchit::Router<u8>> = LazyLock::new(|| {
            let mut router = matchit::Router::new();
            for (index, template) in ROUTE_LABELS[..usize::from(UNMATCHED)].iter().enumerate() {
                router
                    .insert(*template, index as u8)
                    .expect("the route templates are distinct");
            }
            router
        });
        Self(TEMPLATES.at(path).map_or(UNMATCHED, |found| *found.value))
    }

    /// The label text.
    pub fn as_str(self) -> &'static str {
        ROUTE_LABELS[usize::from(self.0)]
    }
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];

/// A request method, as an index into a static table of labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodLabel(u8);

impl MethodLabel {
    /// The label of `method` (`other` for the rare ones).
    pub fn of(method: &Method) -> Self {
        Self(match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::PATCH => 5,
            Method::OPTIONS => 6,
            _ => 7,
        })
    }

    /// The label text.
    pub fn as_str(self) -> &'static str {
        METHODS[usize::from(self.0)]
    }
}

/// Status codes as labels, built once.
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
    use super::{ROUTE_LABELS, RouteLabel, UNMATCHED};
    use tower::ServiceExt;

    /// The templates declared with `.route("...")` in the routers.
    fn declared() -> Vec<String> {
        let mut templates = Vec::new();
        for (source, prefix) in [
            (include_str!("routes/mod.rs"), ""),
            (include_str!("routes/api.rs"), "/api/v1"),
        ] {
            for declared in source.split(".route(\"").skip(1) {
                let path = &declared[..declared.find('"').expect("closing quote")];
                templates.push(format!("{prefix}{path}"));
            }
        }
        templates
    }

    /// The labels are exactly the declared routes: none missing (it would be counted as
    /// `unmatched`), none extra (a path would get a label axum does not route).
    #[test]
    fn the_labels_are_the_declared_routes() {
        let mut declared = declared();
        declared.sort();
        let mut labels: Vec<String> = ROUTE_LABELS[..usize::from(UNMATCHED)]
            .iter()
            .map(|l| (*l).to_owned())
            .collect();
        labels.sort();
        assert_eq!(declared, labels);
    }

    /// For paths of every shape, the label is the template of the route axum picks (each
    /// route answers its own template), or `unmatched` where axum has no route.
    #[tokio::test]
    async fn labels_agree_with_axum() {
        let mut router = axum::Router::new();
        for &template in &ROUTE_LABELS[..usize::from(UNMATCHED)] {
            router = router.route(
                template,
                axum::routing::any(move || async move { template }),
            );
        }
        let router = router.fallback(|| async { "unmatched" });
        let paths = [
            "/",
            "/abc1234",
            "/abc+",
            "/healthz",
            "/readyz",
            "/robots.txt",
            "/favicon.ico",
            "/static/app.css",
            "/static/app.js",
            "/static/other.css",
            "/static",
            "/api",
            "/api/",
            "/api/v1",
            "/api/v1/",
            "/api/v1/links",
            "/api/v1/links/",
            "/api/v1/links/x",
            "/api/v1/links/x/y",
            "/api/v1/openapi.json",
            "/api/v2/links",
            "/a/b",
            "//",
            "/a/",
            "/%61bc",
        ];
        for path in paths {
            let request = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(
                RouteLabel::for_path(path).as_str(),
                std::str::from_utf8(&body).unwrap(),
                "label of {path}"
            );
        }
    }
}
