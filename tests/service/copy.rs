//! `shortener copy` SQLite to Postgres with 100,000 links: complete, verified, re-runnable,
//! and completed by a re-run after an interruption; Postgres to SQLite, catching up with a
//! source that kept serving, conflicts, a mistyped source, a source written during the copy.

use std::process::{Command, Output};
use std::time::Duration;

use chrono::Duration as Age;
use shortener::link::{Link, now};
use shortener::store::Store;
use tokio::task::JoinSet;

use crate::support::{Binary, TestDb, client, get_json};

const LINKS: usize = 100_000;

/// `shortener ARGS...` with an empty environment.
fn shortener<const N: usize>(args: [&str; N]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shortener"));
    cmd.env_clear().args(args);
    cmd
}

fn copy(from: &str, to: &str, batch: &str) -> Command {
    shortener(["copy", "--from", from, "--to", to, "--batch-size", batch])
}

fn run(mut cmd: Command) -> (Output, String) {
    let out = cmd.output().expect("run shortener");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

async fn all_links(store: &impl Store) -> Vec<Link> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.page(after.as_deref(), 5000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.code.clone());
        all.extend(page);
    }
    all
}

#[tokio::test]
async fn copying_100k_links_to_postgres_is_complete_and_safe_to_repeat() {
    let Some(target) = TestDb::postgres().await else {
        return;
    };
    let source = TestDb::sqlite();
    let source_store = source.store().await;
    let base = now() - Age::days(30);
    let links: Vec<Link> = (0..LINKS)
        .map(|i| Link {
            code: format!("k{i:06}"),
            url: format!("https://example.com/doc/{i}?ref=copy"),
            created_at: base + Age::seconds(i as i64),
            clicks: (i % 97) as i64,
            disabled_at: (i % 1000 == 0).then_some(base),
            disabled_reason: (i % 1000 == 0).then(|| "abuse".to_owned()),
        })
        .collect();
    for chunk in links.chunks(5000) {
        assert_eq!(
            source_store.import(chunk).await.unwrap().inserted,
            chunk.len() as u64
        );
    }

    let (out, log) = run(copy(&source.url, &target.url, "1000"));
    assert!(out.status.success(), "copy failed:\n{log}");
    assert!(log.contains("100000 links written"), "{log}");
    assert!(log.contains("verified"), "{log}");

    // Exactly the same links, timestamps, click counts and tombstones.
    let target_store = target.store().await;
    assert!(
        all_links(&target_store).await == links,
        "the copy differs from the source"
    );

    // A second run copies nothing and succeeds.
    let (out, log) = run(copy(&source.url, &target.url, "1000"));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("0 links written, 0 updated"), "{log}");
    assert!(log.contains("100000 already up to date"), "{log}");

    // Every link resolves through an instance on Postgres, with its count.
    let bin = Binary::start(&target.url, &["--click-flush-interval", "1h"]);
    let client = client();
    let mut checks = JoinSet::new();
    for chunk in links.chunks(LINKS / 16) {
        let (client, chunk, base) = (client.clone(), chunk.to_vec(), bin.url(""));
        checks.spawn(async move {
            let mut wrong = Vec::new();
            for link in &chunk {
                let r = client
                    .get(format!("{base}/{}", link.code))
                    .send()
                    .await
                    .unwrap();
                let ok = if link.is_disabled() {
                    r.status() == 410
                } else {
                    r.status() == 302 && r.headers()["location"] == link.url.as_str()
                };
                if !ok {
                    wrong.push(link.code.clone());
                }
            }
            wrong
        });
    }
    let wrong: Vec<String> = checks.join_all().await.into_iter().flatten().collect();
    assert!(
        wrong.is_empty(),
        "{} links do not resolve, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let shown: serde_json::Value = get_json(&client, &bin.url("/api/v1/links/k000096")).await;
    assert_eq!(shown["clicks"], 96);
    assert!(bin.terminate().success());
}

#[tokio::test]
async fn an_interrupted_copy_is_completed_by_running_it_again() {
    let Some(target) = TestDb::postgres().await else {
        return;
    };
    let source = TestDb::sqlite();
    let source_store = source.store().await;
    let links: Vec<Link> = (0..20_000)
        .map(|i| Link {
            code: format!("i{i:05}"),
            url: format!("https://example.org/{i}"),
            created_at: now(),
            clicks: i,
            disabled_at: None,
            disabled_reason: None,
        })
        .collect();
    for chunk in links.chunks(5000) {
        source_store.import(chunk).await.unwrap();
    }
    let target_store = target.store().await;

    // Small batches, killed (SIGKILL) once some but not all have arrived.
    let mut child = copy(&source.url, &target.url, "50")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut copied = 0;
    for _ in 0..400 {
        copied = target_store.count().await.unwrap();
        if copied > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = target_store.count().await.unwrap();
    assert!(
        copied > 0 && partial < 20_000,
        "not interrupted half-way: {partial} copied"
    );

    let (out, log) = run(copy(&source.url, &target.url, "1000"));
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains(&format!("{} links written", 20_000 - partial)),
        "{log}"
    );
    assert!(all_links(&target_store).await == links);
}

#[tokio::test]
async fn export_then_import_moves_every_link_between_backends() {
    let Some(target) = TestDb::postgres().await else {
        return;
    };
    let source = TestDb::sqlite();
    let source_store = source.store().await;
    let links: Vec<Link> = (0..2500)
        .map(|i| Link {
            code: format!("e{i:04}"),
            url: format!("https://example.net/{i}"),
            created_at: now() - Age::minutes(i),
            clicks: i * 3,
            disabled_at: None,
            disabled_reason: None,
        })
        .collect();
    source_store.import(&links).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("links.jsonl");
    let path = file.to_str().unwrap();

    let (out, stderr) = run(shortener([
        "export",
        "--database-url",
        &source.url,
        "--output",
        path,
    ]));
    assert!(out.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 2500);
    assert!(text.lines().next().unwrap().contains(r#""clicks":0"#));

    // A broken line is reported by number and the command fails; the rest still arrives.
    std::fs::write(&file, format!("{text}{{\"code\":\"x y\"}}\n")).unwrap();
    let (out, stderr) = run(shortener([
        "import",
        "--database-url",
        &target.url,
        "--input",
        path,
    ]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 2501"), "{stderr}");
    assert!(all_links(&target.store().await).await == links);
}

/// A file in no particular order (not as `export` writes it) imports exactly as the sorted
/// one would: the links, and the conflict of a code given twice with different URLs.
#[tokio::test]
async fn an_unsorted_file_imports_like_a_sorted_one() {
    let db = TestDb::sqlite();
    let links = sample("u", 3000);
    let mut lines: Vec<String> = links
        .iter()
        .map(|l| serde_json::to_string(l).unwrap())
        .collect();
    // A sorted prefix (which goes straight in), then a link that is still in order, and the
    // rest shuffled by a fixed permutation (sorted before it is written). The link in
    // between takes a code of the rest, with another URL: whatever comes first in the file
    // is kept, the other is a conflict.
    let (prefix, rest) = lines.split_at_mut(500);
    rest.sort_by_key(|line| line.bytes().map(usize::from).sum::<usize>() * 7919 % 3001);
    let mut clash = links[1700].clone();
    clash.url = "https://example.org/other".into();
    let text = format!(
        "{}\n{}\n{}\n",
        prefix.join("\n"),
        serde_json::to_string(&clash).unwrap(),
        rest.join("\n")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("links.jsonl");
    std::fs::write(&file, text).unwrap();

    let (out, stderr) = run(shortener([
        "import",
        "--batch-size",
        "100",
        "--database-url",
        &db.url,
        "--input",
        file.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("3000 links written"), "{stderr}");
    assert!(stderr.contains(&links[1700].code), "{stderr}");
    let mut expected = links.clone();
    expected[1700] = clash;
    assert!(all_links(&db.store().await).await == expected);
}

/// `count` links with clicks, one of them disabled.
fn sample(prefix: &str, count: usize) -> Vec<Link> {
    (0..count)
        .map(|i| Link {
            code: format!("{prefix}{i:04}"),
            url: format!("https://example.com/{prefix}/{i}"),
            created_at: now() - Age::hours(i as i64),
            clicks: i as i64,
            disabled_at: (i == 3).then(now),
            disabled_reason: (i == 3).then(|| "abuse".to_owned()),
        })
        .collect()
}

#[tokio::test]
async fn copying_postgres_to_sqlite_catches_up_and_reports_conflicts() {
    let Some(source) = TestDb::postgres().await else {
        return;
    };
    let source_store = source.store().await;
    source_store.import(&sample("p", 500)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target_url = format!("sqlite://{}", dir.path().join("copy.db").display());
    let target = TestDb::sqlite_at(&target_url);

    let (out, log) = run(copy(&source.url, &target_url, "64"));
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("500 links written") && log.contains("verified"),
        "{log}"
    );
    let target_store = target.store().await;
    assert!(all_links(&target_store).await == all_links(&source_store).await);

    // The source kept serving: clicks, a disable, a new link. A second run brings the target
    // up to date and calls none of it a conflict.
    source_store
        .add_clicks(&[("p0001".into(), 10), ("p0499".into(), 1)])
        .await
        .unwrap();
    assert!(source_store.disable("p0002", "phishing").await.unwrap());
    source_store.import(&sample("q", 1)).await.unwrap();
    let (out, log) = run(copy(&source.url, &target_url, "64"));
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("1 links written, 3 updated") && log.contains("497 already up to date"),
        "{log}"
    );
    assert!(all_links(&target_store).await == all_links(&source_store).await);

    // A different link under a code the target has: reported, never overwritten, exit 1.
    let mut theirs = sample("clash", 1).remove(0);
    theirs.url = "https://example.org/theirs".into();
    target_store
        .import(std::slice::from_ref(&theirs))
        .await
        .unwrap();
    source_store.import(&sample("clash", 1)).await.unwrap();
    let (out, log) = run(copy(&source.url, &target_url, "64"));
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("1 conflicts") && log.contains("clash0000"),
        "{log}"
    );
    assert!(!log.contains("verified"), "{log}");
    assert_eq!(target_store.get("clash0000").await.unwrap(), Some(theirs));
}

#[tokio::test]
async fn a_mistyped_source_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("shortner.db");
    let target = dir.path().join("target.db");
    let (out, log) = run(copy(
        &format!("sqlite://{}", typo.display()),
        &format!("sqlite://{}", target.display()),
        "100",
    ));
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("cannot open the source database")
            && log.contains(&format!("no SQLite database at {}", typo.display())),
        "{log}"
    );
    assert!(!typo.exists() && !target.exists(), "nothing created");
    assert!(!log.contains("verified"), "{log}");
}

#[tokio::test]
async fn a_source_written_during_the_copy_is_not_called_verified() {
    let source = TestDb::sqlite();
    let source_store = source.store().await;
    source_store.import(&sample("w", 400)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target_url = format!("sqlite://{}", dir.path().join("copy.db").display());

    // The URLs from the environment this time, as with passwords in them one would.
    let mut cmd = shortener(["copy"]);
    cmd.env("SHORTENER_COPY_FROM", &source.url)
        .env("SHORTENER_COPY_TO", &target_url)
        .env("SHORTENER_COPY_BATCH_SIZE", "1");
    let copying = tokio::task::spawn_blocking(move || run(cmd));
    // Clicks keep arriving while it runs (one link per transaction: it takes a while).
    while !copying.is_finished() {
        source_store
            .add_clicks(&[("w0000".into(), 1)])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (out, log) = copying.await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("the source changed during the copy (clicks "),
        "{log}"
    );
    assert!(!log.contains("verified"), "{log}");

    // Once writes stop, a second run completes and verifies.
    let (out, log) = run(copy(&source.url, &target_url, "100"));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("verified"), "{log}");
    let target_store = TestDb::sqlite_at(&target_url).store().await;
    assert!(all_links(&target_store).await == all_links(&source_store).await);
}
