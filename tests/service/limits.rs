//! Rate limits over real TCP, client addresses behind proxies, and closed creation.

use serde_json::json;
use shortener::ratelimit::LimitSettings;

use crate::keys::keys_cli;
use crate::support::{TestApp, TestDb};

async fn create_status(app: &TestApp, xff: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/links"))
        .json(&json!({ "url": "https://example.com/flood" }));
    if let Some(xff) = xff {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.unwrap()
}

fn limited(create: u32, not_found: u32, trusted_proxies: usize) -> LimitSettings {
    LimitSettings {
        create_per_minute: create,
        not_found_per_minute: not_found,
        trusted_proxies,
    }
}

#[tokio::test]
async fn a_burst_of_creates_gets_429_and_spoofing_does_not_escape() {
    let app = TestApp::spawn_on(TestDb::sqlite(), |s| s.limits = limited(5, 100, 0)).await;
    for i in 0..5 {
        // A fresh spoofed address each time: ignored, since no proxy is trusted.
        let r = create_status(&app, Some(&format!("198.51.100.{i}"))).await;
        assert_eq!(r.status(), 201);
    }
    let r = create_status(&app, Some("203.0.113.77")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // The form shares the budget and answers with a page.
    let r = app
        .client
        .post(app.url("/"))
        .form(&[("url", "https://example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("too many requests"));

    // A valid API key is not limited.
    let (_, key) = keys_cli(&app.db, &["create", "--name", "bulk"]);
    let r = app
        .client
        .post(app.url("/api/v1/links"))
        .bearer_auth(&key)
        .json(&json!({ "url": "https://example.com/bulk" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    app.stop().await;
}

#[tokio::test]
async fn forwarded_addresses_count_through_exactly_the_trusted_hops() {
    let app = TestApp::spawn_on(TestDb::sqlite(), |s| s.limits = limited(2, 100, 1)).await;
    // Behind one trusted proxy, the right-most entry is the client: separate budgets.
    for client in ["192.0.2.10", "192.0.2.11"] {
        for _ in 0..2 {
            assert_eq!(create_status(&app, Some(client)).await.status(), 201);
        }
        assert_eq!(create_status(&app, Some(client)).await.status(), 429);
    }
    // Entries left of the trusted hop are the client's own words: changing them changes nothing.
    let r = create_status(&app, Some("6.6.6.6, 192.0.2.10")).await;
    assert_eq!(r.status(), 429);
    app.stop().await;
}

#[tokio::test]
async fn two_trusted_hops_pick_the_second_entry_from_the_right() {
    // A CDN in front of a load balancer: the balancer's entry (right-most) is the CDN, the one
    // left of it the client; anything further left is the client's own words.
    let app = TestApp::spawn_on(TestDb::sqlite(), |s| s.limits = limited(2, 100, 2)).await;
    let same_client = [
        "6.6.6.6, 192.0.2.20, 10.0.0.1",
        // Garbage left of the trusted entries does not knock the client back to the peer, and
        // the port a proxy may add is no new client.
        "not-an-address, 192.0.2.20:4711, 10.0.0.2",
        "7.7.7.7, 192.0.2.20, 10.0.0.1",
    ];
    let statuses = [201, 201, 429];
    for (xff, want) in same_client.into_iter().zip(statuses) {
        assert_eq!(create_status(&app, Some(xff)).await.status(), want, "{xff}");
    }
    // Another client behind the same proxies has a budget of its own, IPv6 included.
    for xff in ["192.0.2.21, 10.0.0.1", "[2001:db8::21]:443, 10.0.0.1"] {
        assert_eq!(create_status(&app, Some(xff)).await.status(), 201, "{xff}");
    }
    // An unusable trusted entry counts against the peer (here the test client), not a
    // made-up address: two of those, then the peer's budget is spent.
    for want in [201, 201, 429] {
        let r = create_status(&app, Some("192.0.2.22, garbage, 10.0.0.1")).await;
        assert_eq!(r.status(), want);
    }
    app.stop().await;
}

#[tokio::test]
async fn guessing_codes_gets_blocked_from_all_lookups() {
    let app = TestApp::spawn_on(TestDb::sqlite(), |s| s.limits = limited(100, 5, 0)).await;
    let code = app.create("https://example.com/real").await;
    for i in 0..5 {
        let r = app.get(&format!("/guess{i}")).await;
        assert_eq!(r.status(), 404);
    }
    let r = app.get("/guess9").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Hits are refused too, so the guesser cannot tell them from misses.
    let r = app.get(&format!("/{code}")).await;
    assert_eq!(r.status(), 429);
    app.stop().await;
}

#[tokio::test]
async fn guessing_codes_through_the_api_is_limited_too() {
    let app = TestApp::spawn_on(TestDb::sqlite(), |s| s.limits = limited(100, 4, 0)).await;
    let code = app.create("https://example.com/real").await;
    // The API and the redirect path share one budget: misses on either count.
    for i in 0..2 {
        assert_eq!(
            app.get(&format!("/api/v1/links/guess{i}")).await.status(),
            404
        );
        assert_eq!(app.get(&format!("/guess{i}x")).await.status(), 404);
    }
    // Unparsable codes are misses too.
    let r = app.get("/api/v1/links/not%20a%20code").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Over the budget, a real code is refused too: hits look like misses.
    let r = app.get(&format!("/api/v1/links/{code}")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(app.get(&format!("/{code}")).await.status(), 429);
    app.stop().await;
}

#[tokio::test]
async fn a_private_instance_creates_only_with_a_key() {
    let app = TestApp::spawn_on(TestDb::sqlite(), |s| s.public_create = false).await;
    assert_eq!(create_status(&app, None).await.status(), 401);
    let r = app
        .client
        .post(app.url("/"))
        .form(&[("url", "https://example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, key) = keys_cli(&app.db, &["create", "--name", "owner"]);
    let r = app
        .client
        .post(app.url("/api/v1/links"))
        .bearer_auth(&key)
        .json(&json!({ "url": "https://example.com/private" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A wrong key is an error, not an anonymous request.
    let r = app
        .client
        .post(app.url("/api/v1/links"))
        .bearer_auth("shk_wrong")
        .json(&json!({ "url": "https://example.com/x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}
