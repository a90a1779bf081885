//! Redirects, click counting, reserved paths, probes and graceful shutdown.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use shortener::store::Store;
use tower::ServiceExt;

use crate::support::{TestApp, TestDb};

#[tokio::test]
async fn a_code_redirects_with_the_configured_status() {
    let app = TestApp::spawn().await;
    let code = app.create("https://example.com/target").await;
    let r = app.get(&format!("/{code}")).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://example.com/target");
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    assert_eq!(r.headers()["x-robots-tag"], "noindex");

    let head = app
        .client
        .head(app.url(&format!("/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 302);
    assert_eq!(head.headers()["location"], "https://example.com/target");
    app.stop().await;

    let permanent = TestApp::spawn_on(TestDb::sqlite(), |s| {
        s.redirect_status = StatusCode::PERMANENT_REDIRECT;
    })
    .await;
    let code = permanent.create("https://example.com/p").await;
    let r = permanent
        .client
        .get(permanent.url(&format!("/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["cache-control"], "public, max-age=86400");
    permanent.stop().await;
}

#[tokio::test]
async fn unknown_codes_get_a_real_404_page() {
    let app = TestApp::spawn().await;
    for path in [
        "/nothere",
        "/no%20such",
        "/%FF%FE",
        "/a/b/c",
        &format!("/{}", "x".repeat(300)),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(r.text().await.unwrap().contains("Link not found"));
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_codes_are_remembered_briefly_and_creating_clears_them() {
    let app = TestApp::spawn_on(TestDb::sqlite(), |s| {
        s.cache_negative_ttl = std::time::Duration::from_secs(3600);
    })
    .await;
    assert_eq!(app.get("/sneaky").await.status(), 404);
    // Written behind the service's back: the remembered miss still answers, without asking
    // the database.
    let target = shortener::link::TargetUrl::parse(
        "https://example.com/sneaky",
        &app.state.settings.url_policy(),
    )
    .unwrap();
    let code = shortener::link::ShortCode::parse_alias("sneaky").unwrap();
    let link = shortener::link::Link::new(&code, &target);
    app.state.store.insert(&link).await.unwrap();
    assert_eq!(app.get("/sneaky").await.status(), 404);

    // Created through the service: the miss is forgotten at once.
    assert_eq!(app.get("/fresh-alias").await.status(), 404);
    let r = app
        .client
        .post(app.url("/api/v1/links"))
        .json(&serde_json::json!({ "url": "https://example.com/fresh", "slug": "fresh-alias" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(app.get("/fresh-alias").await.status(), 302);
    app.stop().await;
}

#[tokio::test]
async fn disabled_links_answer_410() {
    let app = TestApp::spawn().await;
    let code = app.create("https://example.com/bad").await;
    assert!(app.state.store.disable(&code, "test").await.unwrap());
    app.state.cache.invalidate(&code);
    let r = app.get(&format!("/{code}")).await;
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("Link disabled"));
    app.stop().await;
}

#[tokio::test]
async fn reserved_paths_are_never_codes() {
    let app = TestApp::spawn().await;
    let get = |p: &str| app.client.get(app.url(p)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let css = get("/static/app.css").await.unwrap();
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(get("/static/app.js").await.unwrap().status(), 200);
    assert_eq!(get("/static/other.js").await.unwrap().status(), 404);
    assert_eq!(get("/favicon.ico").await.unwrap().status(), 204);
    let robots = get("/robots.txt").await.unwrap().text().await.unwrap();
    assert!(robots.contains("Disallow: /"));
    let api = get("/api").await.unwrap();
    assert_eq!(api.status(), 404);
    assert_eq!(api.headers()["content-type"], "application/json");
    app.stop().await;
}

#[tokio::test]
async fn clicks_reach_the_database_in_batches() {
    let app = TestApp::spawn_on(TestDb::sqlite(), |s| {
        s.click_flush_interval = Duration::from_millis(100);
    })
    .await;
    let code = app.create("https://example.com/popular").await;
    for _ in 0..5 {
        let r = app.get(&format!("/{code}")).await;
        assert_eq!(r.status(), 302);
    }
    // HEAD is not a click.
    app.client
        .head(app.url(&format!("/{code}")))
        .send()
        .await
        .unwrap();
    let mut clicks = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        clicks = app.state.store.get(&code).await.unwrap().unwrap().clicks;
        if clicks == 5 {
            break;
        }
    }
    assert_eq!(clicks, 5);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_flushes_pending_clicks_and_readiness_drains() {
    let app = TestApp::spawn_on(TestDb::sqlite(), |s| {
        s.click_flush_interval = Duration::from_secs(3600);
    })
    .await;
    let code = app.create("https://example.com/x").await;
    for _ in 0..3 {
        let r = app.get(&format!("/{code}")).await;
        assert!(r.headers().get("connection").is_none());
    }
    app.state.begin_shutdown();
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    // Still served while draining, but every answer closes its connection, so a balancer's
    // next request goes elsewhere instead of onto a connection about to close.
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["connection"], "close");
    let db = app.stop().await;
    let store = db.store().await;
    assert_eq!(store.get(&code).await.unwrap().unwrap().clicks, 3);
}

#[tokio::test]
async fn the_router_answers_in_process() {
    let app = TestApp::spawn().await;
    let router = shortener::app::router(app.state.clone());
    let response = router
        .oneshot(
            Request::get("/definitely-missing")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"));
    app.stop().await;
}

#[tokio::test]
async fn a_plus_shows_where_a_link_goes_without_going() {
    let app = TestApp::spawn().await;
    let code = app.create("https://example.com/look?a=1&b=<x>").await;
    let r = app.get(&format!("/{code}+")).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Where this link goes"));
    assert!(
        html.contains("https://example.com/look?a=1&amp;b=%3Cx%3E"),
        "{html}"
    );
    assert!(html.contains("Clicks"));
    assert_eq!(app.get("/nothere+").await.status(), 404);
    app.stop().await;
}
