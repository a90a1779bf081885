//! The real binary as an operator runs it: crash safety, graceful stop, subcommands.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Binary, TestDb, client, free_port, get_json, proc_status};

async fn create(client: &reqwest::Client, bin: &Binary, url: &str) -> String {
    let r = client
        .post(bin.url("/api/v1/links"))
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    body["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn acknowledged_links_survive_kill_9() {
    let db = TestDb::sqlite();
    let client = client();
    let bin = Binary::start(&db.url, &[]);
    let mut created = Vec::new();
    for i in 0..200 {
        let url = format!("https://example.com/page/{i}");
        created.push((create(&client, &bin, &url).await, url));
    }
    // Right after the last 201: no graceful anything.
    bin.kill9();

    let bin = Binary::start(&db.url, &[]);
    for (code, url) in &created {
        let r = client
            .get(bin.url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            302,
            "{code} lost after kill -9; log:\n{}",
            bin.log_tail()
        );
        assert_eq!(r.headers()["location"], url.as_str());
    }
    let status = bin.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_exits_0_and_click_counts_survive_a_restart() {
    let db = TestDb::sqlite();
    let client = client();
    let bin = Binary::start(&db.url, &["--click-flush-interval", "1h"]);
    let code = create(&client, &bin, "https://example.com/counted").await;
    for _ in 0..7 {
        client
            .get(bin.url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
    }
    let status = bin.terminate();
    assert_eq!(status.code(), Some(0));

    let bin = Binary::start(&db.url, &[]);
    let shown: Value = get_json(&client, &bin.url(&format!("/api/v1/links/{code}"))).await;
    assert_eq!(shown["clicks"], 7);
    assert!(bin.terminate().success());
}

#[tokio::test]
async fn migrate_and_healthcheck_subcommands_work() {
    let db = TestDb::sqlite();
    let exe = env!("CARGO_BIN_EXE_shortener");
    let migrate = Command::new(exe)
        .env_clear()
        .args(["migrate", "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let bin = Binary::start(&db.url, &[]);
    let healthy = Command::new(exe)
        .env_clear()
        .args(["healthcheck", "--url", &bin.url("/readyz")])
        .output()
        .unwrap();
    assert!(healthy.status.success());
    assert!(bin.terminate().success());

    let down = Command::new(exe)
        .env_clear()
        .args([
            "healthcheck",
            "--url",
            "http://127.0.0.1:9/readyz",
            "--timeout",
            "2s",
        ])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
}

/// Without `--url`, `healthcheck` probes where the service listens (`SHORTENER_LISTEN`, as
/// run.sh and the container image set it): a specific address as it is, IPv4 or IPv6, and a
/// wildcard through the loopback address of its family.
#[tokio::test]
async fn healthcheck_probes_the_listen_address() {
    let db = TestDb::sqlite();
    let mut listens = vec![
        format!("127.0.0.2:{}", free_port()),
        format!("0.0.0.0:{}", free_port()),
    ];
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        listens.push(format!("[::1]:{}", free_port()));
        listens.push(format!("[::]:{}", free_port()));
    }
    for listen in &listens {
        let bin = Binary::start_at(&db.url, listen.parse().unwrap(), &[]);
        let probe = Command::new(env!("CARGO_BIN_EXE_shortener"))
            .env_clear()
            .env("SHORTENER_LISTEN", listen)
            .arg("healthcheck")
            .output()
            .unwrap();
        assert!(
            probe.status.success(),
            "healthcheck for {listen}: {}",
            String::from_utf8_lossy(&probe.stderr)
        );
        assert!(bin.terminate().success());
    }
}

/// The binary turns transparent huge pages off for itself (see `main.rs` for why): the kernel
/// shows the process's flag in `/proc/PID/status`.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_service_runs_without_transparent_huge_pages() {
    let db = TestDb::sqlite();
    let bin = Binary::start(&db.url, &[]);
    let flag = proc_status(bin.child.id(), "THP_enabled");
    assert_eq!(flag.as_deref(), Some("0"));
    assert!(bin.terminate().success());
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error_not_a_panic() {
    let exe = env!("CARGO_BIN_EXE_shortener");
    let out = Command::new(exe)
        .env_clear()
        .args(["--database-url", "mysql://x/y", "--metrics-listen", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[tokio::test]
async fn metrics_are_served_privately_and_labelled_by_route() {
    let db = TestDb::sqlite();
    let client = client();
    let metrics_addr = format!("127.0.0.1:{}", crate::support::free_port());
    let bin = Binary::start(&db.url, &["--metrics-listen", &metrics_addr]);
    let code = create(&client, &bin, "https://example.com/measured").await;
    for _ in 0..3 {
        client
            .get(bin.url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
    }
    client.get(bin.url("/no-such-code")).send().await.unwrap();
    // Not on the public listener.
    let public = client.get(bin.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);

    let mut text = String::new();
    for _ in 0..50 {
        text = client
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("shortener_click_flushes_total") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/{code}",status="302"} 3"#),
        "{text}"
    );
    // Two misses: the unknown code, and `/metrics` asked of the public listener.
    assert!(
        text.contains(r#"shortener_redirects_total{result="not_found"} 2"#),
        "{text}"
    );
    assert!(text.contains("shortener_links_created_total 1"), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("shortener_click_flushes_total"), "{text}");
    assert!(
        !text.contains(&code) && !text.contains("no-such-code"),
        "codes never become labels"
    );
    assert!(bin.terminate().success());
}

#[tokio::test]
async fn the_blocklist_refuses_destinations_and_reloads_on_sighup() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("blocklist.txt");
    std::fs::write(&list, "# known phishing\nevil.example\n").unwrap();
    let client = client();
    let bin = Binary::start(&db.url, &["--blocklist", list.to_str().unwrap()]);
    let post = |url: &'static str| {
        client
            .post(bin.url("/api/v1/links"))
            .json(&json!({ "url": url }))
            .send()
    };
    let r = post("https://login.evil.example/account").await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "links to evil.example are not accepted here"
    );
    assert_eq!(post("https://spam.example/").await.unwrap().status(), 201);

    std::fs::write(&list, "evil.example\nspam.example\n").unwrap();
    let pid = bin.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut status = 0;
    for _ in 0..50 {
        status = post("https://spam.example/again")
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 422 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 422, "SIGHUP reloads the list");
    assert!(bin.terminate().success());

    // An unreadable list stops the start with a clear message.
    let out = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .args([
            "--database-url",
            &db.url,
            "--metrics-listen",
            "off",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--blocklist", "/nonexistent/blocklist.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the blocklist"));
}

#[tokio::test]
async fn sqlite_on_a_public_address_warns_and_loopback_does_not() {
    let db = TestDb::sqlite();
    let public = Binary::start_listening(&db.url, "0.0.0.0:0", &[]);
    let log = public.log();
    assert!(
        log.contains("serving on a public address with SQLite") && log.contains("Postgres"),
        "{log}"
    );
    assert!(public.terminate().success());
    let private = Binary::start(&db.url, &[]);
    assert!(!private.log().contains("public address"));
    assert!(private.terminate().success());
}

#[tokio::test]
async fn postgres_serves_without_a_statement_cache_on_a_postgresql_url() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // As behind PgBouncer in transaction mode, with the scheme's long spelling.
    let url = db.url.replacen("postgres://", "postgresql://", 1);
    let client = client();
    let bin = Binary::start(&url, &["--db-statement-cache", "false"]);
    assert!(
        bin.log().contains(r#""backend":"postgres""#),
        "{}",
        bin.log()
    );
    let code = create(&client, &bin, "https://example.com/pooled").await;
    for _ in 0..3 {
        let r = client
            .get(bin.url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "log tail:\n{}", bin.log_tail());
    }
    let shown = get_json(&client, &bin.url(&format!("/api/v1/links/{code}"))).await;
    assert_eq!(shown["url"], "https://example.com/pooled");
    assert_eq!(
        client
            .get(bin.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(bin.terminate().success());
}

#[tokio::test]
async fn operator_commands_refuse_a_missing_sqlite_file() {
    // The default database is `shortener.db` in the current directory: run from the wrong one.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shortener.db");
    let exe = env!("CARGO_BIN_EXE_shortener");
    let run = |args: &[&str]| {
        Command::new(exe)
            .env_clear()
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["keys", "create", "--name", "ci"][..],
        &["keys", "list"],
        &["links", "disable", "abc1234", "--reason", "spam"],
        &["export"],
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("no SQLite database at {}", file.display())),
            "{args:?}: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed something: no key, no links"
        );
        assert!(!file.exists(), "{args:?} created the database");
    }
    // `migrate` creates it; then the same commands work and say which database they used.
    assert!(run(&["migrate"]).status.success());
    let out = run(&["keys", "create", "--name", "ci"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("database: SQLite file {}", file.display())),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("shk_"));
}
