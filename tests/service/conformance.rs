//! One story every backend must tell the same way, run against SQLite and Postgres.

use chrono::Duration;
use shortener::link::{Destination, Link, now};
use shortener::store::{
    self, ImportOutcome, OpenMode, PoolOptions, ROLL_UP_LOCK, RolledUp, Store, StoreError, Totals,
};
use sqlx::Connection;

use crate::support::TestDb;

fn link(code: &str, url: &str) -> Link {
    Link {
        code: code.into(),
        url: url.into(),
        created_at: now(),
        clicks: 0,
        disabled_at: None,
        disabled_reason: None,
    }
}

async fn story(store: impl Store) {
    // Migrations are idempotent.
    store.migrate().await.expect("second migrate");
    store.ping().await.expect("ping");
    assert_eq!(store.count().await.unwrap(), 0);

    // Insert and read back exactly what was written.
    let first = link("Abc123", "https://example.com/a?b=c#d");
    store.insert(&first).await.expect("insert");
    assert_eq!(store.get("Abc123").await.unwrap(), Some(first.clone()));
    assert_eq!(
        store.get("abc123").await.unwrap(),
        None,
        "codes are case-sensitive"
    );
    assert_eq!(store.get("missing").await.unwrap(), None);
    let leads_to = |url: &str, disabled| {
        Some(Destination {
            url: url.into(),
            disabled,
        })
    };
    assert_eq!(
        store.destination("Abc123").await.unwrap(),
        leads_to(&first.url, false)
    );
    assert_eq!(store.destination("abc123").await.unwrap(), None);

    // A taken code is a conflict, never an overwrite.
    let clash = link("Abc123", "https://evil.example/");
    assert!(matches!(
        store.insert(&clash).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get("Abc123").await.unwrap().unwrap().url, first.url);

    // Clicks add up; unknown codes are ignored.
    store
        .add_clicks(&[("Abc123".into(), 3), ("nope".into(), 7)])
        .await
        .unwrap();
    store.add_clicks(&[("Abc123".into(), 2)]).await.unwrap();
    store.add_clicks(&[]).await.unwrap();
    assert_eq!(store.get("Abc123").await.unwrap().unwrap().clicks, 5);

    // Disabling keeps a tombstone: the code stays taken.
    assert!(
        store
            .disable("Abc123", "reported as phishing")
            .await
            .unwrap()
    );
    assert!(!store.disable("Abc123", "again").await.unwrap());
    assert!(!store.disable("missing", "none").await.unwrap());
    let gone = store.get("Abc123").await.unwrap().unwrap();
    assert!(gone.is_disabled());
    assert_eq!(
        store.destination("Abc123").await.unwrap(),
        leads_to(&first.url, true)
    );
    assert_eq!(
        gone.disabled_reason.as_deref(),
        Some("reported as phishing")
    );
    assert!(matches!(
        store.insert(&first).await,
        Err(StoreError::Conflict)
    ));

    // Paging is in byte order ("Z" < "a"), the same in every backend.
    for code in ["b-2", "Zed", "a_1", "c"] {
        store
            .insert(&link(code, "https://example.org/"))
            .await
            .unwrap();
    }
    let codes = |links: Vec<Link>| links.into_iter().map(|l| l.code).collect::<Vec<_>>();
    assert_eq!(
        codes(store.page(None, 3).await.unwrap()),
        ["Abc123", "Zed", "a_1"]
    );
    assert_eq!(
        codes(store.page(Some("a_1"), 10).await.unwrap()),
        ["b-2", "c"]
    );
    assert!(store.page(Some("c"), 10).await.unwrap().is_empty());
    assert_eq!(store.count().await.unwrap(), 5);

    // Import keeps codes, timestamps and clicks; identical rows are unchanged, differing ones
    // are conflicts and are left alone.
    let mut old = link("imported", "https://example.net/old");
    old.created_at = now() - Duration::days(400);
    old.clicks = 42;
    let existing = store.get("c").await.unwrap().unwrap();
    let mut differing = existing.clone();
    differing.url = "https://example.net/other".into();
    let outcome = store
        .import(&[old.clone(), existing.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ImportOutcome {
            inserted: 1,
            unchanged: 1,
            ..ImportOutcome::default()
        }
    );
    assert_eq!(store.get("imported").await.unwrap(), Some(old.clone()));
    let again = store.import(&[old, differing]).await.unwrap();
    assert_eq!(again.inserted, 0);
    assert_eq!(again.unchanged, 1);
    assert_eq!(again.conflicts, vec!["c".to_owned()]);
    assert_eq!(store.get("c").await.unwrap(), Some(existing));
    assert!(store.import(&[]).await.unwrap() == ImportOutcome::default());

    // The same code, URL and creation time are the same link, whatever its counts: a link
    // that kept being clicked, or was disabled, in the database it comes from catches up.
    // Nothing goes backwards: fewer clicks or no disable change nothing.
    let mut clicked = store.get("imported").await.unwrap().unwrap();
    clicked.clicks = 50;
    let mut disabled = store.get("b-2").await.unwrap().unwrap();
    disabled.clicks = 7;
    disabled.disabled_at = Some(now());
    disabled.disabled_reason = Some("phishing, report 3".into());
    let mut behind = store.get("a_1").await.unwrap().unwrap();
    store.add_clicks(&[("a_1".into(), 9)]).await.unwrap();
    behind.clicks = 4;
    let outcome = store
        .import(&[clicked.clone(), disabled.clone(), behind])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ImportOutcome {
            updated: 2,
            unchanged: 1,
            ..ImportOutcome::default()
        }
    );
    assert_eq!(store.get("imported").await.unwrap(), Some(clicked.clone()));
    assert_eq!(store.get("b-2").await.unwrap(), Some(disabled.clone()));
    assert_eq!(store.get("a_1").await.unwrap().unwrap().clicks, 9);
    // A disabled link stays disabled, with its own time and reason, whatever comes in.
    let mut enabled_again = disabled.clone();
    enabled_again.disabled_at = None;
    enabled_again.disabled_reason = None;
    enabled_again.clicks = 8;
    let outcome = store.import(&[enabled_again]).await.unwrap();
    assert_eq!(outcome.updated, 1, "clicks still catch up");
    let kept = store.get("b-2").await.unwrap().unwrap();
    assert_eq!(
        (kept.clicks, kept.disabled_at, kept.disabled_reason),
        (8, disabled.disabled_at, disabled.disabled_reason)
    );
    // Another creation time is another link, even with the same URL: a conflict.
    let mut recreated = clicked.clone();
    recreated.created_at = clicked.created_at + Duration::seconds(1);
    recreated.clicks = 99;
    assert_eq!(
        store.import(&[recreated]).await.unwrap().conflicts,
        ["imported"]
    );
    assert_eq!(store.get("imported").await.unwrap(), Some(clicked));
    // A batch inserts what is new and reports, in order, what was taken.
    let batch = [
        link("batch1", "https://example.com/1"),
        link("Abc123", "https://evil.example/again"),
        link("batch2", "https://example.com/2"),
    ];
    assert_eq!(
        store.insert_batch(&batch).await.unwrap(),
        vec![true, false, true]
    );
    store.sync_commits().await.expect("the batch made durable");
    assert_eq!(store.get("batch2").await.unwrap(), Some(batch[2].clone()));
    assert_eq!(store.get("Abc123").await.unwrap().unwrap().url, first.url);
    assert_eq!(store.insert_batch(&[]).await.unwrap(), Vec::<bool>::new());
    // The same code twice in one batch: the first wins, as if they came one after the other.
    let twice = [
        link("twice", "https://example.com/first"),
        link("twice", "https://example.com/second"),
    ];
    assert_eq!(store.insert_batch(&twice).await.unwrap(), vec![true, false]);
    assert_eq!(store.get("twice").await.unwrap(), Some(twice[0].clone()));
    // More links than one statement takes.
    let many: Vec<Link> = (0..2500)
        .map(|i| link(&format!("many{i}"), "https://example.com/many"))
        .collect();
    let inserted = store.insert_batch(&many).await.unwrap();
    assert!(inserted.iter().all(|done| *done) && inserted.len() == 2500);
    // More links to catch up than one statement takes.
    let clicked: Vec<Link> = many
        .iter()
        .map(|l| Link {
            clicks: 3,
            ..l.clone()
        })
        .collect();
    assert_eq!(store.import(&clicked).await.unwrap().updated, 2500);
    assert_eq!(store.get("many2499").await.unwrap().unwrap().clicks, 3);

    // Pending clicks move into their links a chunk at a time, and readers see the same counts
    // before, during and after; an unknown code's count is dropped. Pending are Abc123 (3 + 2),
    // a_1 (9) and nope (7): three counts, or four where each call adds a row (Postgres).
    let mut moved = Vec::new();
    let mut from = String::new();
    loop {
        let chunk = store.roll_up_clicks(&from, 2).await.unwrap();
        assert_eq!(store.get("Abc123").await.unwrap().unwrap().clicks, 5);
        assert_eq!(store.get("a_1").await.unwrap().unwrap().clicks, 9);
        let Some(last) = chunk.last else {
            assert_eq!(chunk.moved, 0);
            break;
        };
        moved.push(chunk.moved);
        from = last;
    }
    assert!(
        moved == [2, 1] || moved == [2, 2],
        "chunks of at most 2: {moved:?}"
    );
    // Catching up counts the clicks still pending: the larger count wins, never the sum.
    store.add_clicks(&[("a_1".into(), 1)]).await.unwrap();
    let mut ahead = store.get("a_1").await.unwrap().unwrap();
    assert_eq!(ahead.clicks, 10);
    ahead.clicks = 12;
    assert_eq!(store.import(&[ahead.clone()]).await.unwrap().updated, 1);
    assert_eq!(store.get("a_1").await.unwrap(), Some(ahead));

    // Totals are what was stored, pending clicks included: "Abc123" 5 clicks, "imported" 50,
    // "a_1" 12, "b-2" 8, the 2500 links 3 each; "Abc123" and "b-2" disabled.
    let totals = Totals {
        links: store.count().await.unwrap(),
        clicks: 5 + 50 + 12 + 8 + 2500 * 3,
        disabled: 2,
    };
    assert_eq!(store.totals().await.unwrap(), totals);
    assert_eq!(store.roll_up_clicks("", 10).await.unwrap().moved, 1, "a_1");
    assert_eq!(store.totals().await.unwrap(), totals);
    assert_eq!(store.get("a_1").await.unwrap().unwrap().clicks, 12);

    // More counts in one call than one statement takes: every one of them lands.
    let mut counts: Vec<(String, u64)> = many.iter().map(|l| (l.code.clone(), 1)).collect();
    counts.sort();
    store.add_clicks(&counts).await.unwrap();
    assert_eq!(store.get("many2499").await.unwrap().unwrap().clicks, 4);
    assert_eq!(
        store.totals().await.unwrap().clicks,
        totals.clicks + 2500,
        "every count added once"
    );
    assert_eq!(store.roll_up_clicks("", 10_000).await.unwrap().moved, 2500);

    // A pass goes on from where its last chunk ended: counts added behind it meanwhile wait
    // for the next pass, and reads count them all the while.
    let counts = [("batch1".into(), 1), ("twice".into(), 2)];
    store.add_clicks(&counts).await.unwrap();
    assert_eq!(
        store.roll_up_clicks("c", 10).await.unwrap(),
        RolledUp {
            moved: 1,
            last: Some("twice".into())
        }
    );
    assert_eq!(store.get("batch1").await.unwrap().unwrap().clicks, 1);
    assert_eq!(store.get("twice").await.unwrap().unwrap().clicks, 2);
    assert_eq!(store.roll_up_clicks("twice", 10).await.unwrap().moved, 0);
    let next_pass = store.roll_up_clicks("", 10).await.unwrap();
    assert_eq!(
        (next_pass.moved, next_pass.last.as_deref()),
        (1, Some("batch1"))
    );
    assert_eq!(store.get("batch1").await.unwrap().unwrap().clicks, 1);
    store
        .check_schema()
        .await
        .expect("a migrated database has the schema");

    store.close().await;
}

/// A database opened read-only is neither created nor migrated: a missing SQLite file or
/// an empty database is an error that says so, and nothing is written.
async fn read_only_opens_change_nothing(url: &str) {
    let reading = PoolOptions::default().opening(OpenMode::ReadOnly);
    let store = store::connect(url, &reading).await.expect("connect");
    let err = store.check_schema().await.unwrap_err();
    assert!(err.to_string().contains("no shortener schema"), "{err}");
    store.close().await;
}

#[tokio::test]
async fn sqlite_passes_the_conformance_story() {
    story(TestDb::sqlite().store().await).await;
}

/// Under a steady stream of commits the service's background checkpoints still start the WAL
/// over, so it stays bounded instead of growing with every link ever written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_bounded_under_steady_writes() {
    let db = TestDb::sqlite();
    let options = PoolOptions::default().for_service();
    let store::AnyStore::Sqlite(lite) = store::connect(&db.url, &options).await.expect("connect")
    else {
        panic!("a sqlite: URL opens SQLite");
    };
    lite.migrate().await.expect("migrate");
    assert!(lite.needs_checkpoints());
    let writer = {
        let lite = lite.clone();
        tokio::spawn(async move {
            // Codes in a scattered order, as random codes are, so commits touch pages all over.
            for batch in 0..1000_u64 {
                let links: Vec<Link> = (0..64)
                    .map(|i| {
                        let n = (batch * 64 + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        link(&format!("{n:016x}"), "https://example.com/wal")
                    })
                    .collect();
                lite.insert_batch(&links).await.expect("insert");
            }
        })
    };
    let mut most = 0;
    while !writer.is_finished() {
        most = most.max(lite.checkpoint().await.expect("checkpoint"));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    writer.await.unwrap();
    lite.insert(&link("last", "https://example.com/last"))
        .await
        .unwrap();
    let frames = lite.checkpoint().await.unwrap();
    // A restart comes once the log passes 16,384 frames; without one, 64,000 scattered links
    // leave about 80,000.
    assert!(
        frames < 24_576,
        "the WAL holds {frames} frames after 64,000 links (at most {most} seen between writes)"
    );
    assert_eq!(lite.count().await.unwrap(), 64_001);
    lite.close().await;
}

#[tokio::test]
async fn postgres_passes_the_conformance_story() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    story(db.store().await).await;
}

/// Uncached redirects that arrive together share queries: while Postgres holds them up, a
/// hundred lookups wait in a handful of statements (a statement each would fill the pool),
/// and then each gets its own code's answer, also with some of them gone meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gathers_concurrent_lookups_into_a_few_queries() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let options = PoolOptions {
        max_connections: 32,
        ..PoolOptions::default()
    };
    let store = store::connect(&db.url, &options).await.expect("connect");
    store.migrate().await.expect("migrate");
    let links: Vec<Link> = (0..60)
        .map(|i| link(&format!("g{i:02}"), &format!("https://example.com/{i}")))
        .collect();
    store.insert_batch(&links).await.unwrap();
    for i in (0..60).step_by(7) {
        assert!(store.disable(&format!("g{i:02}"), "test").await.unwrap());
    }
    let expected = |code: &str| {
        let i: usize = code.strip_prefix('g')?.parse().ok()?;
        Some(Destination {
            url: format!("https://example.com/{i}"),
            disabled: i % 7 == 0,
        })
    };

    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("LOCK TABLE links IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();
    // Every link, some twice, and codes no link has.
    let lookups: Vec<_> = (0..100)
        .map(|i| {
            let code = if i < 90 {
                format!("g{:02}", i % 60)
            } else {
                format!("none{i}")
            };
            let (store, asked) = (store.clone(), code.clone());
            (
                code,
                tokio::spawn(async move { store.destination(&asked).await }),
            )
        })
        .collect();
    let mut watch = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let waiting_statements = "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND query LIKE 'SELECT % FROM links WHERE code %' AND state = 'active'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (mut waiting, mut since) = (0_i64, std::time::Instant::now());
    while since.elapsed() < std::time::Duration::from_millis(500) {
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} lookup statements, never settled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let now: i64 = sqlx::query_scalar(waiting_statements)
            .fetch_one(&mut watch)
            .await
            .unwrap();
        if now != waiting {
            (waiting, since) = (now, std::time::Instant::now());
        }
    }
    assert!(
        (2..=5).contains(&waiting),
        "100 lookups waited in {waiting} statements (one alone, at most four shared)"
    );
    // Requests that go away while they wait leave the others their answers.
    for (_, lookup) in lookups.iter().step_by(9) {
        lookup.abort();
    }
    held.commit().await.unwrap();
    let mut answered = 0;
    for (i, (code, lookup)) in lookups.into_iter().enumerate() {
        match lookup.await {
            Ok(found) => {
                assert_eq!(found.unwrap(), expected(&code), "{code}");
                answered += 1;
            }
            Err(e) => assert!(e.is_cancelled() && i % 9 == 0, "{code}: {e}"),
        }
    }
    assert!(answered >= 88, "{answered} answered");
    assert_eq!(
        store.destination("g01").await.unwrap(),
        expected("g01"),
        "alone again"
    );
}

#[tokio::test]
async fn postgres_passes_it_without_a_statement_cache_and_as_postgresql() {
    // As behind PgBouncer in transaction mode (no prepared statement outlives its query),
    // on a URL with the scheme's long spelling.
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let url = db.url.replacen("postgres://", "postgresql://", 1);
    assert!(url.starts_with("postgresql://"), "{url}");
    let options = PoolOptions {
        statement_cache: false,
        ..PoolOptions::default()
    };
    let store = store::connect(&url, &options).await.expect("connect");
    assert_eq!(store.backend(), "postgres");
    store.migrate().await.expect("migrate");
    story(store).await;
}

#[tokio::test]
async fn postgres_upgrade_keeps_pending_clicks_and_the_previous_versions_writes() {
    // A database of the version before the click log (migrations 1 to 3), with clicks
    // pending, and an instance of that version still writing during a rolling upgrade.
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let all = sqlx::migrate!("migrations/postgres");
    let previous = sqlx::migrate::Migrator {
        migrations: all.migrations[..3].to_vec().into(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    previous.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO links (code, url, created_at) VALUES ('old', 'https://example.com/', now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    // What an instance of the previous version writes for each flushed count.
    let previous_flush = "INSERT INTO pending_clicks (code, clicks) VALUES ('old', $1) \
         ON CONFLICT (code) DO UPDATE SET clicks = pending_clicks.clicks + EXCLUDED.clicks";
    sqlx::query(previous_flush)
        .bind(4_i64)
        .execute(&pool)
        .await
        .unwrap();

    let store = db.store().await;
    assert_eq!(
        store.get("old").await.unwrap().unwrap().clicks,
        4,
        "moved over"
    );
    sqlx::query(previous_flush)
        .bind(3_i64)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        store.get("old").await.unwrap().unwrap().clicks,
        7,
        "written meanwhile"
    );
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pending_clicks")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "no count waits where nothing reads it");
    // While another instance has the turn to move counts, this one moves none.
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(ROLL_UP_LOCK)
        .execute(&mut other)
        .await
        .unwrap();
    assert_eq!(
        store.roll_up_clicks("", 10).await.unwrap(),
        RolledUp::default(),
        "not its turn"
    );
    other.close().await.unwrap();
    assert_eq!(
        store.roll_up_clicks("", 10).await.unwrap().moved,
        2,
        "one row per write"
    );
    assert_eq!(store.get("old").await.unwrap().unwrap().clicks, 7);
    assert_eq!(store.totals().await.unwrap().clicks, 7);
    store.close().await;
    pool.close().await;
}

#[tokio::test]
async fn sqlite_read_only_opens_create_and_migrate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.db");
    let url = format!("sqlite://{}", path.display());
    for mode in [OpenMode::ReadOnly, OpenMode::Existing] {
        let err = store::connect(&url, &PoolOptions::default().opening(mode))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::MissingDatabase(p) if *p == path),
            "{err}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
    }
    assert!(!path.exists(), "nothing created");
    // An empty file is a database without the schema: refused, and left empty.
    std::fs::write(&path, b"").unwrap();
    read_only_opens_change_nothing(&url).await;
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    // Once migrated, it reads; writes are refused by SQLite itself.
    TestDb::sqlite_at(&url).store().await.close().await;
    let reading = PoolOptions::default().opening(OpenMode::ReadOnly);
    let store = store::connect(&url, &reading).await.unwrap();
    store.check_schema().await.expect("schema");
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(
        store
            .insert(&link("nope", "https://example.com/"))
            .await
            .is_err()
    );
    store.close().await;
}

#[tokio::test]
async fn postgres_read_only_opens_migrate_nothing() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    read_only_opens_change_nothing(&db.url).await;
    db.store().await.close().await;
    let reading = PoolOptions::default().opening(OpenMode::ReadOnly);
    let store = store::connect(&db.url, &reading).await.unwrap();
    store.check_schema().await.expect("schema");
    store.close().await;
}
