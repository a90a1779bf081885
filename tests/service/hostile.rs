//! Hostile input through the form and the API: each gets the right 4xx, nothing unescaped
//! comes back, and the service keeps working.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::TestApp;

const SCRIPT: &str = "<script>alert(1)</script>";

#[tokio::test]
async fn hostile_urls_and_aliases_are_refused_and_never_echoed_raw() {
    let app = TestApp::spawn().await;
    let urls = [
        "javascript:alert(document.cookie)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "blob:https://example.com/uuid",
        "https://paypal.com@evil.example/login",
        "https://user:pass@example.com/",
        "http://",
        "https://exa mple.com/",
        "<script>alert(1)</script>",
        "\"><script>alert(1)</script>",
    ];
    for url in urls {
        let r = app
            .client
            .post(app.url("/api/v1/links"))
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "API accepted {url:?}");
        let r = app
            .client
            .post(app.url("/"))
            .form(&[("url", url), ("slug", "")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "form accepted {url:?}");
        let html = r.text().await.unwrap();
        assert!(
            !html.contains(SCRIPT),
            "unescaped script echoed for {url:?}"
        );
    }
    for slug in [
        SCRIPT,
        "a\"b",
        "../etc",
        "abc%00",
        "ab\u{202e}c",
        "a/b",
        "x".repeat(65).as_str(),
    ] {
        let r = app
            .client
            .post(app.url("/"))
            .form(&[("url", "https://example.com"), ("slug", slug)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "alias {slug:?}");
        assert!(!r.text().await.unwrap().contains(SCRIPT));
    }
    app.stop().await;
}

#[tokio::test]
async fn broken_bodies_get_4xx_never_5xx() {
    let app = TestApp::spawn().await;
    let api = app.url("/api/v1/links");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("application/json", b"\xff\xfe\x00garbage".to_vec(), 400),
        (
            "application/json",
            b"{\"url\": \"https://example.com\"".to_vec(),
            400,
        ),
        ("application/json", b"[]".to_vec(), 422),
        ("application/json", b"{\"url\": 42}".to_vec(), 422),
        ("application/json", b"".to_vec(), 400),
        ("text/html", b"{}".to_vec(), 415),
        (
            "application/x-www-form-urlencoded",
            b"url=https://example.com".to_vec(),
            415,
        ),
        ("application/json", vec![b'{'; 20_000], 413),
    ];
    for (content_type, body, status) in cases {
        let r = app
            .client
            .post(&api)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            status,
            "{content_type} {:?}",
            String::from_utf8_lossy(&body[..body.len().min(30)])
        );
        let json: serde_json::Value = r.json().await.unwrap();
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let r = app
        .client
        .post(app.url("/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(b"url=%FF%FE&slug=%00".to_vec())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = app
        .client
        .post(app.url("/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 20_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Still healthy afterwards.
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn slow_clients_cannot_hold_connections_open() {
    let app = TestApp::spawn_on(crate::support::TestDb::sqlite(), |s| {
        s.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();

    // Half a request, then silence: the server closes the connection once the timeout passes.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Drip: ")
        .await
        .unwrap();
    let started = Instant::now();
    closed_while_stalled(&mut slow, "a stalled request").await;
    assert!(started.elapsed() >= Duration::from_millis(400));

    // A connection that says nothing at all is closed too.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "silent connection: {read:?}"
    );

    // A connection that was served, then stalls in its next request, is closed when that
    // request's time is up, not the first's: the first head takes 300 ms to arrive, so the
    // second's deadline is 300 ms after the first's.
    let mut stalling = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let opened = Instant::now();
    stalling
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stalling.write_all(b"Host: stalling\r\n\r\n").await.unwrap();
    let mut first = [0u8; 512];
    let n = stalling.read(&mut first).await.unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "first request: {:?}",
        String::from_utf8_lossy(&first[..n])
    );
    stalling
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: stal")
        .await
        .unwrap();
    closed_while_stalled(&mut stalling, "a stalled second request").await;
    assert!(
        opened.elapsed() >= Duration::from_millis(700),
        "closed {:?} after opening, before the second request's deadline (about 800 ms)",
        opened.elapsed()
    );

    // Meanwhile a normal client is served.
    assert_eq!(app.get("/").await.status(), 200);
    app.stop().await;
}

/// Waits, at most 5 s, for the server to close `stream`, which stopped in the middle of a
/// request (`what`): a 408 may come first, nothing else.
async fn closed_while_stalled(stream: &mut tokio::net::TcpStream, what: &str) {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "{what} held its connection open for 5 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "unexpected answer to {what}: {answer:?}"
    );
}
