//! A rolling restart of two instances on Postgres behind nginx, under steady redirect and
//! create load: no request fails, and each instance drains (readiness 503 while it still
//! serves) before it stops.

use std::sync::Arc;
use std::time::Duration;

use crate::load::{Load, Mix, seed};
use crate::support::{Binary, Nginx, TestDb, client, free_port, wait_for_status};

const DRAIN: &[&str] = &["--drain-delay", "1s", "--shutdown-timeout", "5s"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_loses_no_request() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let addrs: Vec<_> = (0..2)
        .map(|_| std::net::SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let mut instances: Vec<Option<Binary>> = addrs
        .iter()
        .map(|&a| Some(Binary::start_at(&db.url, a, DRAIN)))
        .collect();
    let nginx = Nginx::start(&addrs);
    let codes = seed(&nginx.url(""), 50).await;
    let mix = Mix {
        base: nginx.url(""),
        codes: Arc::new(codes.clone()),
        create_every: 10,
        max_requests: 200_000,
        max_time: Duration::from_secs(60),
        window: Duration::from_secs(1),
    };
    let load = Load::start(&mix, 4);
    let client = client();
    tokio::time::sleep(Duration::from_millis(500)).await;

    for (i, &addr) in addrs.iter().enumerate() {
        let mut bin = instances[i].take().expect("running");
        bin.sigterm();
        // Draining: not ready, but still answering what reaches it.
        wait_for_status(&client, &bin, "/readyz", 503, Duration::from_millis(800)).await;
        let r = client
            .get(bin.url(&format!("/{}", codes[0])))
            .send()
            .await
            .expect("a draining instance still serves");
        assert_eq!(r.status(), 302, "log tail:\n{}", bin.log_tail());
        let status = bin.wait_exit(Duration::from_secs(10));
        assert!(
            status.success(),
            "instance {i} exited with {status}; log tail:\n{}",
            bin.log_tail()
        );
        // Traffic meanwhile goes to the other instance alone.
        tokio::time::sleep(Duration::from_millis(500)).await;
        instances[i] = Some(Binary::start_at(&db.url, addr, DRAIN));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let report = load.finish().await;
    eprintln!("rolling restart: {}", report.describe());
    let logs: Vec<String> = instances.iter().flatten().map(Binary::log_tail).collect();
    assert_eq!(
        report.failed,
        0,
        "{}\ninstance logs:\n{}",
        report.describe(),
        logs.join("\n---\n")
    );
    assert!(
        report.redirects > 100 && report.created.len() > 10,
        "{}\ninstance logs:\n{}",
        report.describe(),
        logs.join("\n---\n")
    );
    // Every acknowledged create is there, whichever instance took it.
    for (code, url) in report.created.iter().step_by(10) {
        let body =
            crate::support::get_json(&client, &nginx.url(&format!("/api/v1/links/{code}"))).await;
        assert_eq!(body["url"], url.as_str(), "{code}: {body}");
    }
    for bin in instances.into_iter().flatten() {
        assert!(bin.terminate().success());
    }
}
