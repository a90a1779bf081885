//! SQLite on a full disk: creates answer 503 with a clear message, redirects keep working,
//! nothing stored is damaged, and creates work again once space returns. The test mounts a
//! tiny tmpfs of its own, so it needs root (as in CI).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::{Binary, client};

/// A tmpfs mounted for this test, unmounted when dropped.
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=`). Outside CI, `None` with a printed
    /// reason when mounting is not allowed; in CI that is a failure.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        if out.status.success() {
            return Some(Self { dir });
        }
        let why = String::from_utf8_lossy(&out.stderr);
        if std::env::var_os("CI").is_some() {
            panic!("cannot mount a tmpfs for the disk-full test (CI runs as root): {why}");
        }
        crate::support::skip(&format!(
            "cannot mount a tmpfs (run as root to test a full disk): {why}"
        ));
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes zeros to `path` until the filesystem is full.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 16 * 1024];
    let mut written = 0;
    while file.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = file.sync_all();
    written
}

async fn create(client: &reqwest::Client, bin: &Binary, url: &str) -> (u16, Value) {
    let r = client
        .post(bin.url("/api/v1/links"))
        .json(&json!({ "url": url }))
        .send()
        .await
        .expect("create");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json body"))
}

#[tokio::test]
async fn a_full_disk_refuses_creates_and_keeps_redirecting() {
    let Some(disk) = TinyDisk::mount("4m") else {
        return;
    };
    let db_path: PathBuf = disk.path().join("links.db");
    let db_url = format!("sqlite://{}", db_path.display());
    let client = client();
    let mut bin = Binary::start(&db_url, &["--cache-size", "0"]);

    let mut stored = Vec::new();
    for i in 0..20 {
        let url = format!("https://example.com/before-full/{i}");
        let (status, body) = create(&client, &bin, &url).await;
        assert_eq!(status, 201, "{body}; log tail:\n{}", bin.log_tail());
        stored.push((body["code"].as_str().unwrap().to_owned(), url));
    }

    let filler = disk.path().join("filler");
    let written = fill(&filler);
    eprintln!("filled the disk with {written} bytes");

    // The write-ahead log reuses its space for a while; within a few hundred creates it must
    // grow, and cannot.
    let mut refused = None;
    for i in 0..500 {
        let url = format!("https://example.com/while-full/{i}");
        let (status, body) = create(&client, &bin, &url).await;
        match status {
            201 => stored.push((body["code"].as_str().unwrap().to_owned(), url)),
            _ => {
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.unwrap_or_else(|| {
        panic!(
            "500 creates succeeded on a full disk; log:\n{}",
            bin.log_tail()
        )
    });
    assert_eq!(status, 503, "{body}; log tail:\n{}", bin.log_tail());
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temporarily unavailable"),
        "{body}"
    );

    // Reads still work (the cache is off: every redirect reads the database).
    for (code, url) in &stored {
        let r = client
            .get(bin.url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            302,
            "{code} on a full disk; log tail:\n{}",
            bin.log_tail()
        );
        assert_eq!(r.headers()["location"], url.as_str());
    }
    assert_eq!(
        client
            .get(bin.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "log tail:\n{}",
        bin.log_tail()
    );

    // Space returns: creates work again without a restart.
    std::fs::remove_file(&filler).expect("remove filler");
    let started = Instant::now();
    loop {
        let url = "https://example.com/after-full".to_owned();
        let (status, body) = create(&client, &bin, &url).await;
        if status == 201 {
            stored.push((body["code"].as_str().unwrap().to_owned(), url));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "creates still fail after space returned: {status} {body}; log:\n{}",
            bin.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bin.sigterm();
    let status = bin.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit {status}; log tail:\n{}",
        bin.log_tail()
    );
    let log = bin.log();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");

    // Nothing damaged: the file passes SQLite's own check and every link is still there.
    let mut conn = sqlx::SqliteConnection::connect(&db_url).await.unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM links")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, stored.len() as i64);
    conn.close().await.unwrap();
}
