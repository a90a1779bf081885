//! Postgres goes away and comes back: readiness reports it, cached redirects keep working,
//! creates fail fast with 503, and the instance recovers by itself, without a panic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Binary, OwnPostgres, client, wait_for_status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_survives_a_postgres_outage() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let bin = Binary::start(&pg.admin_url, &["--db-acquire-timeout", "1s"]);
    let client = client();
    let create = |target: &str| {
        client
            .post(bin.url("/api/v1/links"))
            .json(&json!({ "url": target }))
            .send()
    };
    let created = async |target: &str| {
        let r = create(target).await.unwrap();
        assert_eq!(r.status(), 201, "log tail:\n{}", bin.log_tail());
        r.json::<Value>().await.unwrap()["code"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let code = created("https://example.com/before").await;
    // Never looked up before the outage: after it, it must come from the database.
    let uncached = created("https://example.com/uncached").await;
    // Resolve once so it is cached.
    assert_eq!(
        client
            .get(bin.url(&format!("/{code}")))
            .send()
            .await
            .unwrap()
            .status(),
        302,
        "log tail:\n{}",
        bin.log_tail()
    );

    // Steady redirect load on the cached link for the whole outage (bounded in count and time).
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, url, stop) = (client.clone(), bin.url(&format!("/{code}")), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed)
                && ok + failed < 50_000
                && started.elapsed() < Duration::from_secs(60)
            {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 302 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    pg.stop();
    let stopped_at = Instant::now();
    let took = wait_for_status(&client, &bin, "/readyz", 503, Duration::from_secs(2)).await;
    eprintln!("readiness turned 503 {took:?} after the stop");

    let r = client
        .get(bin.url(&format!("/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        302,
        "cached redirects keep working; log tail:\n{}",
        bin.log_tail()
    );

    let started = Instant::now();
    let r = create("https://example.com/during").await.unwrap();
    assert_eq!(r.status(), 503, "log tail:\n{}", bin.log_tail());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temporarily unavailable")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "creates fail fast: {:?}; log tail:\n{}",
        started.elapsed(),
        bin.log_tail()
    );
    let r = client.get(bin.url("/uncached1")).send().await.unwrap();
    assert_eq!(
        r.status(),
        503,
        "an uncached lookup cannot say 404 while the database is away; log tail:\n{}",
        bin.log_tail()
    );

    // Ten seconds of outage in all, creates still failing fast all along.
    while stopped_at.elapsed() < Duration::from_secs(10) {
        let started = Instant::now();
        let r = create("https://example.com/during").await.unwrap();
        assert_eq!(r.status(), 503, "log tail:\n{}", bin.log_tail());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a create took {:?}; log tail:\n{}",
            started.elapsed(),
            bin.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        client
            .get(bin.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503,
        "log tail:\n{}",
        bin.log_tail()
    );

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    eprintln!("during the outage: {ok} cached redirects answered, {failed} failed");
    assert!(
        ok > 0 && failed == 0,
        "{ok} ok, {failed} failed; log:\n{}",
        bin.log_tail()
    );
    pg.resume();
    let took = wait_for_status(&client, &bin, "/readyz", 200, Duration::from_secs(2)).await;
    eprintln!("ready again {took:?} after Postgres came back");
    let r = create("https://example.com/after").await.unwrap();
    assert_eq!(r.status(), 201, "log tail:\n{}", bin.log_tail());
    // A link it never cached is read from the database again.
    let r = client
        .get(bin.url(&format!("/{uncached}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "log tail:\n{}", bin.log_tail());
    assert_eq!(r.headers()["location"], "https://example.com/uncached");
    let log = bin.log();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
    assert!(bin.terminate().success());
}
