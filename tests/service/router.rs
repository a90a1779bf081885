//! Every route and every error, in process: one table of requests sent through
//! `app::router` with `tower::ServiceExt::oneshot`, each with the status and content type it
//! must get (and the `error.code` of API errors).

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{Request, header};
use shortener::app::{App, AppState, Settings};
use shortener::keys;
use shortener::link::{Link, ShortCode, TargetUrl};
use shortener::ratelimit::LimitSettings;
use shortener::store::Store;
use tower::ServiceExt;

use crate::support::TestDb;

const HTML: &str = "text/html";
const JSON: &str = "application/json";
const NONE: &str = "";

/// The one client that is over every limit before the table runs.
const FLOODER: &str = "192.0.2.99";

/// What a request carries besides its method and path.
enum With {
    /// Nothing.
    Plain,
    /// `Authorization: Bearer <a valid key>`.
    Key,
    /// A made-up key.
    BadKey,
    /// From the client that is over its limits.
    Flooder,
    /// A JSON body.
    Json(&'static str),
    /// A JSON body, with a valid key.
    JsonKey(&'static str),
    /// A JSON body, from the client that is over its limits.
    JsonFlooder(&'static str),
    /// A form body.
    Form(String),
    /// A form body, from the client that is over its limits.
    FormFlooder(&'static str),
    /// Any body with this content type.
    Typed(&'static str, Vec<u8>),
}

/// Which service a row goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    Up,
    Down,
}

/// One row: the request, then the status, the start of the content type (`NONE`: no body
/// type at all) and, for API errors, `error.code`.
struct Row(
    Db,
    &'static str,
    String,
    With,
    u16,
    &'static str,
    &'static str,
);

fn row(method: &'static str, path: &str, with: With, status: u16, ct: &'static str) -> Row {
    Row(Db::Up, method, path.to_owned(), with, status, ct, "")
}

fn api_error(method: &'static str, path: &str, with: With, status: u16, code: &'static str) -> Row {
    Row(Db::Up, method, path.to_owned(), with, status, JSON, code)
}

fn db_down(row: Row) -> Row {
    Row { 0: Db::Down, ..row }
}

#[rustfmt::skip]
fn table() -> Vec<Row> {
    use With::*;
    let form = |body: &str| Form(body.to_owned());
    let long_url = format!("url=https://example.com/{}", "a".repeat(2100));
    let huge_form = vec![b'a'; 20_000];
    vec![
        // Pages.
        row("GET",  "/", Plain, 200, HTML),
        row("HEAD", "/", Plain, 200, HTML),
        row("POST", "/", form("url=https%3A%2F%2Fexample.com%2Fform&slug="), 201, HTML),
        row("POST", "/", form("url=https%3A%2F%2Fexample.com&slug=my-form"), 201, HTML),
        row("POST", "/", form("url=javascript%3Aalert(1)&slug="), 422, HTML),
        row("POST", "/", Form(long_url), 422, HTML),
        row("POST", "/", form("url=https%3A%2F%2Fexample.com&slug=a%20b"), 422, HTML),
        row("POST", "/", form("url=https%3A%2F%2Fexample.com&slug=fixture1"), 409, HTML),
        row("POST", "/", Typed(JSON, b"{}".to_vec()), 415, HTML),
        row("POST", "/", Typed("application/x-www-form-urlencoded", huge_form), 413, HTML),
        row("POST", "/", FormFlooder("url=https%3A%2F%2Fexample.com"), 429, HTML),
        row("PUT",  "/", Plain, 405, HTML),
        row("GET",  "/static/app.css", Plain, 200, "text/css"),
        row("GET",  "/static/app.js", Plain, 200, "text/javascript"),
        row("GET",  "/static/other.js", Plain, 404, HTML),
        row("GET",  "/robots.txt", Plain, 200, "text/plain"),
        row("GET",  "/favicon.ico", Plain, 204, NONE),
        row("GET",  "/healthz", Plain, 200, "text/plain"),
        row("GET",  "/readyz", Plain, 200, "text/plain"),
        // Redirects and previews.
        row("GET",  "/fixture1", Plain, 302, NONE),
        row("HEAD", "/fixture1", Plain, 302, NONE),
        row("GET",  "/fixture1+", Plain, 200, HTML),
        row("GET",  "/gone-one", Plain, 410, HTML),
        row("GET",  "/gone-one+", Plain, 410, HTML),
        row("GET",  "/missing1", Plain, 404, HTML),
        row("GET",  "/missing1+", Plain, 404, HTML),
        row("GET",  "/%FF%FE", Plain, 404, HTML),
        row("GET",  "/a/b/c", Plain, 404, HTML),
        row("GET",  "/admin", Plain, 404, HTML),
        row("GET",  "/static", Plain, 404, HTML),
        row("HEAD", "/missing1", Plain, 404, HTML),
        row("POST", "/fixture1", Plain, 405, HTML),
        row("GET",  "/fixture1", Flooder, 429, HTML),
        // The API: create.
        row("POST",       "/api/v1/links", Json(r#"{"url": "https://example.com/api"}"#), 201, JSON),
        row("POST",       "/api/v1/links", JsonKey(r#"{"url": "https://example.com/k"}"#), 201, JSON),
        api_error("POST", "/api/v1/links", Json(r#"{"url":"#), 400, "bad_request"),
        api_error("POST", "/api/v1/links", Typed("text/plain", b"{}".to_vec()), 415, "unsupported_media_type"),
        api_error("POST", "/api/v1/links", Typed(JSON, vec![b'{'; 20_000]), 413, "payload_too_large"),
        api_error("POST", "/api/v1/links", Json(r#"{"url": "javascript:alert(1)"}"#), 422, "invalid_url"),
        api_error("POST", "/api/v1/links", Json(r#"{"url": "https://a.example", "slug": "ab"}"#), 422, "invalid_alias"),
        api_error("POST", "/api/v1/links", Json(r#"{"target": "https://a.example"}"#), 422, "invalid_request"),
        api_error("POST", "/api/v1/links", Json(r#"{"url": "https://a.example", "slug": "fixture1"}"#), 409, "alias_taken"),
        api_error("POST", "/api/v1/links", JsonFlooder(r#"{"url": "https://a.example"}"#), 429, "rate_limited"),
        api_error("POST", "/api/v1/links", BadKey, 401, "unauthorized"),
        // The API: look up, list, delete.
        row("GET",          "/api/v1/links/fixture1", Plain, 200, JSON),
        api_error("GET",    "/api/v1/links/gone-one", Plain, 410, "gone"),
        api_error("GET",    "/api/v1/links/missing1", Plain, 404, "not_found"),
        api_error("GET",    "/api/v1/links/fixture1", Flooder, 429, "rate_limited"),
        api_error("GET",    "/api/v1/links", Plain, 401, "unauthorized"),
        row("GET",          "/api/v1/links", Key, 200, JSON),
        api_error("GET",    "/api/v1/links?limit=0", Key, 400, "bad_request"),
        api_error("DELETE", "/api/v1/links/fixture2", Plain, 401, "unauthorized"),
        api_error("DELETE", "/api/v1/links/fixture2", BadKey, 401, "unauthorized"),
        api_error("DELETE", "/api/v1/links/fixture2?reason=a%0Ab", Key, 400, "invalid_reason"),
        api_error("DELETE", "/api/v1/links/fixture2?reason=%0B-", Key, 400, "invalid_reason"),
        row("DELETE",       "/api/v1/links/fixture2?reason=spam", Key, 204, NONE),
        api_error("DELETE", "/api/v1/links/fixture2", Key, 410, "gone"),
        api_error("DELETE", "/api/v1/links/missing1", Key, 404, "not_found"),
        row("GET",          "/api/v1/openapi.json", Plain, 200, JSON),
        // Wrong methods and paths under /api: always JSON.
        api_error("PUT",    "/api/v1/links", Plain, 405, "method_not_allowed"),
        api_error("POST",   "/api/v1/links/fixture1", Plain, 405, "method_not_allowed"),
        api_error("GET",    "/api", Plain, 404, "unknown_endpoint"),
        api_error("GET",    "/api/v2/links", Plain, 404, "unknown_endpoint"),
        api_error("DELETE", "/api/x", Plain, 404, "unknown_endpoint"),
        // The database away.
        db_down(api_error("POST", "/api/v1/links", Json(r#"{"url": "https://a.example"}"#), 503, "unavailable")),
        db_down(api_error("GET",  "/api/v1/links/fixture1", Plain, 503, "unavailable")),
        db_down(row("GET",  "/fixture1", Plain, 503, HTML)),
        db_down(row("POST", "/", form("url=https%3A%2F%2Fexample.com%2Fdown"), 503, HTML)),
        db_down(row("GET",  "/readyz", Plain, 503, "text/plain")),
        db_down(row("GET",  "/healthz", Plain, 200, "text/plain")),
    ]
}

/// A service on a fresh database with two links, a disabled one and a key, limits of 3 a
/// minute, one trusted proxy (so each row can be a client of its own) and one client over
/// every limit. Returns the router and the key.
async fn service(db: &TestDb) -> (AppState, App, String) {
    let store = db.store().await;
    let mut settings = Settings::new(url::Url::parse("https://sho.rt").unwrap());
    settings.limits = LimitSettings {
        create_per_minute: 3,
        not_found_per_minute: 3,
        trusted_proxies: 1,
    };
    let policy = settings.url_policy();
    for (code, disabled) in [("fixture1", false), ("fixture2", false), ("gone-one", true)] {
        let target = TargetUrl::parse("https://example.com/target", &policy).unwrap();
        let link = Link::new(&ShortCode::parse(code).unwrap(), &target);
        store.insert(&link).await.unwrap();
        if disabled {
            assert!(store.disable(code, "test").await.unwrap());
        }
    }
    let key = keys::generate("router");
    store.insert_key(&key.record).await.unwrap();
    let state = AppState::new(store, settings);
    let flooder: IpAddr = FLOODER.parse().unwrap();
    while state.limits.check_create(flooder).is_ok() {}
    while state.limits.record_not_found(flooder).is_ok() {}
    (state.clone(), shortener::app::router(state), key.key)
}

fn request(i: usize, method: &str, path: &str, with: With, key: &str) -> Request<Body> {
    let mut client = format!("198.51.100.{i}");
    let builder = Request::builder().method(method).uri(path);
    let (builder, body) = match with {
        With::Plain => (builder, Body::empty()),
        With::Key => (
            builder.header(header::AUTHORIZATION, format!("Bearer {key}")),
            Body::empty(),
        ),
        With::BadKey => (
            builder.header(header::AUTHORIZATION, "Bearer shk_made_up"),
            Body::empty(),
        ),
        With::Flooder => {
            client = FLOODER.into();
            (builder, Body::empty())
        }
        With::Json(json) => (builder.header(header::CONTENT_TYPE, JSON), Body::from(json)),
        With::JsonKey(json) => (
            builder
                .header(header::CONTENT_TYPE, JSON)
                .header(header::AUTHORIZATION, format!("Bearer {key}")),
            Body::from(json),
        ),
        With::JsonFlooder(json) => {
            client = FLOODER.into();
            (builder.header(header::CONTENT_TYPE, JSON), Body::from(json))
        }
        With::Form(form) => (
            builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Body::from(form),
        ),
        With::FormFlooder(form) => {
            client = FLOODER.into();
            (
                builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
                Body::from(form),
            )
        }
        With::Typed(content_type, bytes) => (
            builder.header(header::CONTENT_TYPE, content_type),
            Body::from(bytes),
        ),
    };
    builder
        .header("x-forwarded-for", client)
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn every_route_and_error_through_the_router() {
    let (db, down_db) = (TestDb::sqlite(), TestDb::sqlite());
    let (_, up, key) = service(&db).await;
    let (down_state, down, _) = service(&down_db).await;
    // The same service with its database gone: every query fails as unavailable.
    down_state.store.close().await;
    let mut failures = Vec::new();
    for (i, Row(on, method, path, with, status, content_type, code)) in
        table().into_iter().enumerate()
    {
        let router = if on == Db::Up {
            up.clone()
        } else {
            down.clone()
        };
        let response = router
            .oneshot(request(i, method, &path, with, &key))
            .await
            .unwrap();
        let what = format!("{method} {path}");
        let got_status = response.status().as_u16();
        let headers = response.headers().clone();
        let got_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let mut wrong = Vec::new();
        if got_status != status {
            wrong.push(format!("status {got_status}, not {status}"));
        }
        if (content_type == NONE) != got_type.is_empty() || !got_type.starts_with(content_type) {
            wrong.push(format!("content type {got_type:?}, not {content_type:?}"));
        }
        if !code.is_empty() {
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if json["error"]["code"] != code || !json["error"]["message"].is_string() {
                wrong.push(format!(
                    "body {}, not error {code}",
                    String::from_utf8_lossy(&body)
                ));
            }
        }
        if got_status == 405 && !headers.contains_key(header::ALLOW) {
            wrong.push("405 without Allow".into());
        }
        if got_status == 429 && !headers.contains_key(header::RETRY_AFTER) {
            wrong.push("429 without Retry-After".into());
        }
        if got_type.starts_with(HTML) {
            let csp = headers
                .get(header::CONTENT_SECURITY_POLICY)
                .map(|v| v.to_str().unwrap());
            if !csp.is_some_and(|csp| {
                csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'")
            }) {
                wrong.push(format!("Content-Security-Policy {csp:?}"));
            }
            if headers
                .get(header::REFERRER_POLICY)
                .is_none_or(|v| v != "no-referrer")
            {
                wrong.push("no Referrer-Policy: no-referrer".into());
            }
        }
        if headers
            .get(header::X_CONTENT_TYPE_OPTIONS)
            .is_none_or(|v| v != "nosniff")
        {
            wrong.push("no X-Content-Type-Options: nosniff".into());
        }
        if !wrong.is_empty() {
            failures.push(format!("row {i}: {what}: {}", wrong.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
