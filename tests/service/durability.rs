//! Every create that answered 201 survives `kill -9` at a random moment under a steady load
//! of creates, on SQLite (with either `--sqlite-synchronous`) and on Postgres.

use std::sync::Arc;
use std::time::Duration;

use crate::load::{Load, Mix};
use crate::support::{Binary, TestDb, client};

/// A pseudo-random moment between 0.5 and 2.5 s, different on every run.
fn random_moment() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    Duration::from_millis(500 + u64::from(nanos % 2000))
}

async fn acknowledged_creates_survive_kill_9_under_load(db: TestDb, flags: &[&str]) {
    let bin = Binary::start(&db.url, flags);
    let mix = Mix {
        base: bin.url(""),
        codes: Arc::new(Vec::new()),
        create_every: 1,
        max_requests: 100_000,
        max_time: Duration::from_secs(30),
        window: Duration::from_secs(1),
    };
    let load = Load::start(&mix, 8);
    let moment = random_moment();
    tokio::time::sleep(moment).await;
    bin.kill9();
    let report = load.finish().await;
    eprintln!(
        "killed after {moment:?}: {} creates acknowledged",
        report.created.len()
    );
    assert!(
        report.created.len() > 10,
        "the load barely ran: {}",
        report.describe()
    );

    let bin = Binary::start(&db.url, flags);
    let client = client();
    let mut lost = Vec::new();
    for (code, url) in &report.created {
        let r = client
            .get(bin.url(&format!("/api/v1/links/{code}")))
            .send()
            .await
            .expect("lookup");
        let stored = if r.status() == 200 {
            r.json::<serde_json::Value>().await.expect("json")["url"]
                .as_str()
                .map(str::to_owned)
        } else {
            None
        };
        if stored.as_deref() != Some(url.as_str()) {
            lost.push(code.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged links lost after kill -9: {:?}\nlog:\n{}",
        lost.len(),
        report.created.len(),
        &lost[..lost.len().min(10)],
        bin.log_tail()
    );
    assert!(bin.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_kill_9_under_load_on_sqlite() {
    acknowledged_creates_survive_kill_9_under_load(TestDb::sqlite(), &[]).await;
}

/// `normal` leaves the `fsync` to checkpoints: a killed process loses nothing all the same,
/// since what it wrote is in the OS's hands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_kill_9_under_load_on_sqlite_synchronous_normal() {
    let flags = ["--sqlite-synchronous", "normal"];
    acknowledged_creates_survive_kill_9_under_load(TestDb::sqlite(), &flags).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_kill_9_under_load_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    acknowledged_creates_survive_kill_9_under_load(db, &[]).await;
}
