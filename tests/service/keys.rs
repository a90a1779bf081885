//! API keys guarding management, through the real CLI and the API.

use std::process::Command;

use serde_json::json;
use shortener::keys;
use shortener::store::Store;

use crate::support::{TestApp, TestDb};

/// Runs `shortener keys ...` against `db` and returns (exit code, stdout).
pub fn keys_cli(db: &TestDb, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .arg("keys")
        .args(args)
        .output()
        .expect("run keys");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

#[tokio::test]
async fn deleting_needs_a_valid_unrevoked_key() {
    let app = TestApp::spawn().await;
    let code = app.create("https://example.com/to-delete").await;
    let delete = |key: Option<&str>| {
        let mut request = app.client.delete(app.url(&format!("/api/v1/links/{code}")));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };

    let r = delete(None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(delete(Some("shk_not_a_key")).await.unwrap().status(), 401);

    let (status, key) = keys_cli(&app.db, &["create", "--name", "tests"]);
    assert_eq!(status, 0);
    let (id, _) = keys::split(&key).expect("the CLI prints just the key");
    let (_, listing) = keys_cli(&app.db, &["list"]);
    assert!(listing.contains(id) && listing.contains("tests"));
    assert!(!listing.contains(&key), "keys are never shown again");

    // A wrong secret for a real id is refused.
    let forged = format!(
        "{}{}",
        &key[..key.len() - 1],
        if key.ends_with('a') { 'b' } else { 'a' }
    );
    assert_eq!(delete(Some(&forged)).await.unwrap().status(), 401);

    assert_eq!(delete(Some(&key)).await.unwrap().status(), 204);
    let r = app.get(&format!("/{code}")).await;
    assert_eq!(r.status(), 410);
    assert_eq!(delete(Some(&key)).await.unwrap().status(), 410);
    let other = app
        .client
        .delete(app.url("/api/v1/links/unknown1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    // A deleted code is never handed out again.
    let again = app
        .client
        .post(app.url("/api/v1/links"))
        .json(&json!({"url": "https://example.com/new", "slug": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    assert_eq!(keys_cli(&app.db, &["revoke", id]).0, 0);
    assert_eq!(keys_cli(&app.db, &["revoke", id]).0, 1, "already revoked");
    let code2 = app.create("https://example.com/kept").await;
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/links/{code2}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        !app.state
            .store
            .get(&code2)
            .await
            .unwrap()
            .unwrap()
            .is_disabled()
    );
    app.stop().await;
}

#[tokio::test]
async fn deleting_through_the_api_can_give_a_reason() {
    let app = TestApp::spawn().await;
    let (_, key) = keys_cli(&app.db, &["create", "--name", "abuse-desk"]);
    let (id, _) = keys::split(&key).unwrap();
    let code = app.create("https://example.com/phish").await;
    let delete = |code: &str, reason: &str| {
        app.client
            .delete(app.url(&format!("/api/v1/links/{code}")))
            .query(&[("reason", reason)])
            .bearer_auth(&key)
            .send()
    };

    // Refused reasons change nothing: too long, or more than one line (it is logged).
    for bad in ["x".repeat(501), "spam\nlink restored".to_owned()] {
        let r = delete(&code, &bad).await.unwrap();
        assert_eq!(r.status(), 400);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_reason");
    }
    assert!(
        !app.state
            .store
            .get(&code)
            .await
            .unwrap()
            .unwrap()
            .is_disabled()
    );

    let r = delete(&code, " phishing, report #12 ").await.unwrap();
    assert_eq!(r.status(), 204);
    let link = app.state.store.get(&code).await.unwrap().unwrap();
    assert_eq!(
        link.disabled_reason.unwrap(),
        format!("phishing, report #12 (through the API, key {id})")
    );
    assert_eq!(app.get(&format!("/{code}")).await.status(), 410);

    // An empty reason is no reason: the default note is kept.
    let other = app.create("https://example.com/other").await;
    assert_eq!(delete(&other, "").await.unwrap().status(), 204);
    let link = app.state.store.get(&other).await.unwrap().unwrap();
    assert_eq!(
        link.disabled_reason.unwrap(),
        format!("deleted through the API (key {id})")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_operator_can_disable_a_link_from_the_command_line() {
    let app = TestApp::spawn().await;
    let code = app.create("https://example.com/phish").await;
    let out = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .args([
            "links",
            "--database-url",
            &app.db.url,
            "disable",
            &code,
            "--reason",
            "phishing report 7",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = app.state.store.get(&code).await.unwrap().unwrap();
    assert_eq!(link.disabled_reason.as_deref(), Some("phishing report 7"));
    app.state.cache.invalidate(&code);
    let r = app.get(&format!("/{code}")).await;
    assert_eq!(r.status(), 410);
    app.stop().await;
}

#[tokio::test]
async fn listing_links_pages_with_a_cursor_and_needs_a_key() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        let r = app
            .client
            .post(app.url("/api/v1/links"))
            .json(&json!({"url": format!("https://example.com/{i}"), "slug": format!("list-{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    assert_eq!(app.get("/api/v1/links").await.status(), 401);
    let (_, key) = keys_cli(&app.db, &["create", "--name", "lister"]);
    let mut seen = Vec::new();
    let mut after = String::new();
    for _ in 0..5 {
        let page: serde_json::Value = app
            .client
            .get(app.url(&format!("/api/v1/links?limit=2&after={after}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for link in page["links"].as_array().unwrap() {
            seen.push(link["code"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["list-0", "list-1", "list-2", "list-3", "list-4"]);
    // Bad pages are client mistakes: a NUL byte in the cursor once reached Postgres as a 500.
    for query in ["limit=0", "limit=abc", "after=a%00b", "after=%3Cscript%3E"] {
        let r = app
            .client
            .get(app.url(&format!("/api/v1/links?{query}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
    }
    app.stop().await;
}

#[tokio::test]
async fn keys_never_appear_in_logs() {
    let db = TestDb::sqlite();
    let bin = crate::support::Binary::start_logging(&db.url, &[], "debug");
    let (_, key) = keys_cli(&db, &["create", "--name", "secret-keeper"]);
    let client = crate::support::client();
    let r = client
        .post(bin.url("/api/v1/links"))
        .json(&json!({"url": "https://example.com/k"}))
        .send()
        .await
        .unwrap();
    let code = r.json::<serde_json::Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = client
        .delete(bin.url(&format!("/api/v1/links/{code}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);
    let bad = client
        .delete(bin.url("/api/v1/links/whatever"))
        .bearer_auth(format!("{key}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let (_, secret) = keys::split(&key).unwrap();
    let log = bin.log();
    assert!(
        log.contains("link deleted"),
        "the deletion is logged:\n{log}"
    );
    assert!(!log.contains(secret), "a key secret reached the log");
    assert!(bin.terminate().success());
}
