//! One story every backend must tell the same way, run against SQLite and Postgres.

use chrono::Duration;
use shortener::link::{Destination, Link, now};
use shortener::store::{ImportOutcome, Store, StoreError};

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
            conflicts: vec![]
        }
    );
    assert_eq!(store.get("imported").await.unwrap(), Some(old.clone()));
    let again = store.import(&[old, differing]).await.unwrap();
    assert_eq!(again.inserted, 0);
    assert_eq!(again.unchanged, 1);
    assert_eq!(again.conflicts, vec!["c".to_owned()]);
    assert_eq!(store.get("c").await.unwrap(), Some(existing));
    assert!(store.import(&[]).await.unwrap() == ImportOutcome::default());
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

    store.close().await;
}

#[tokio::test]
async fn sqlite_passes_the_conformance_story() {
    story(TestDb::sqlite().store().await).await;
}

#[tokio::test]
async fn postgres_passes_the_conformance_story() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    story(db.store().await).await;
}
