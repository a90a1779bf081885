//! The request layer: request ids, the request timeout, and server-side failures logged with
//! the id of the request that failed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::{TestApp, TestDb};

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let code = app.create("https://example.com/id").await;

    // A client's (or a proxy's) id is kept, so one request can be followed across hops.
    let r = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("x-request-id", "edge-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["x-request-id"], "edge-42");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    // Otherwise each request gets its own: a per-process prefix and a counter.
    let ids: Vec<String> = ids_of(&app, &["/", "/nope-nope", "/healthz"]).await;
    let prefix = ids[0].split('-').next().unwrap().to_owned();
    assert_eq!(prefix.len(), 8, "{ids:?}");
    for id in &ids {
        assert!(id.starts_with(&format!("{prefix}-")), "{ids:?}");
    }
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );

    // An id that does not belong in a log line is replaced.
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "x".repeat(65))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with(&prefix)
    );
    app.stop().await;
}

async fn ids_of(app: &TestApp, paths: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for path in paths {
        let r = app.get(path).await;
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    ids
}

/// A request that is not complete within the request timeout (here: a body that never
/// finishes arriving) gets a 503 that says so, a page for browsers and JSON for the API; the
/// failure is logged once, as a warning with the route and the request id the client was
/// given, so an operator can go from a user's report to the cause.
#[tokio::test]
async fn a_request_over_the_timeout_gets_a_clear_503_and_a_log_line() {
    // The test runtime has one thread, so a thread-local subscriber sees the service's logs.
    // But `tracing` caches whether a log call is wanted once per process, asking the first
    // thread that reaches it: another test's thread, with no subscriber, would answer "never"
    // for the failure log (tracing-core's single-subscriber path). A global subscriber that
    // keeps nothing makes every thread's answer "yes".
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    let log = LogBuffer::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(log.clone())
            .finish(),
    );
    let app = TestApp::spawn_on(TestDb::sqlite(), |s| {
        s.request_timeout = Duration::from_millis(300);
    })
    .await;

    let (status, head, body) = half_a_body(&app, "/", "application/x-www-form-urlencoded").await;
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("took too long"), "{body}");

    let (status, head, body) = half_a_body(&app, "/api/v1/links", "application/json").await;
    assert_eq!(status, 503, "{head}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    app.stop().await;

    let text = log.text();
    let line = text
        .lines()
        .find(|l| l.contains("probe-/api/v1/links"))
        .unwrap_or_else(|| panic!("no log line names the request; log:\n{text}"));
    let entry: Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["level"], "WARN", "{line}");
    assert_eq!(entry["request_id"], "probe-/api/v1/links", "{line}");
    assert_eq!(entry["route"], "/api/v1/links", "{line}");
    assert_eq!(entry["status"], 503, "{line}");
}

/// POSTs to `path` a request announcing a 100-byte body and sends 10 bytes of it; returns
/// the status, the head (lower-cased) and the body of the answer.
async fn half_a_body(app: &TestApp, path: &str, content_type: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\n\
         x-request-id: probe-{path}\r\ncontent-length: 100\r\nconnection: close\r\n\r\nurl=https:"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer well within the test's patience")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_owned())
}

/// Log output kept in memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
