//! Postgres backend: one database shared by any number of identical instances.
//!
//! Codes are `COLLATE "C"` so that ordering (and so paging during a copy) is byte order, the
//! same as SQLite's. Batches use `UNNEST` over arrays: one statement, one round trip.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgListener;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use super::pg_lookups::Lookups;
use super::{
    ImportOutcome, PoolOptions, RolledUp, Store, StoreError, Totals, check_applied,
    classify_skipped, skipped,
};
use crate::keys::ApiKeyRecord;
use crate::link::{Destination, Link, now};

/// Links in a Postgres database.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Redirect lookups, gathered into shared queries under load.
    lookups: Arc<Lookups>,
}

/// The channel on which changed link codes are announced to every instance.
pub const CHANGES_CHANNEL: &str = "shortener_link_changes";

const COLUMNS: &str = "code, url, created_at, clicks, disabled_at, disabled_reason";

/// The advisory lock that gives one instance at a time the turn to move logged clicks into
/// their links (seen in `pg_locks` as `classid` 1936224114, `objid` 1952672875): the bytes of
/// "shortclk", a key no other user of the database would pick.
pub const ROLL_UP_LOCK: i64 = 0x7368_6f72_7463_6c6b;

/// The schema migrations of this backend, embedded in the binary.
static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

impl PostgresStore {
    /// Announces that `code` changed to every instance listening (see [`Self::follow_changes`]).
    pub async fn announce(&self, code: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(code)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Opens a pool on a `postgres://` URL (`sslmode=require` and friends are honoured).
    pub async fn connect(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(e.to_string()))?
            .application_name("shortener");
        if !options.statement_cache {
            connect = connect.statement_cache_capacity(0);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        let lookups = Arc::new(Lookups::start(&pool, options.max_connections));
        Ok(Self { pool, lookups })
    }
}

/// A change announced by some instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This code was changed (disabled, deleted).
    Code(String),
    /// Notifications may have been missed (first connect, or a reconnect): anything may have
    /// changed.
    Unknown,
}

impl PostgresStore {
    /// Calls `on_change` for every link change announced by any instance, until `stop`.
    /// Reconnects by itself after a lost connection, reporting [`Change::Unknown`] each time
    /// it listens again (changes made while it was away are unknown).
    pub async fn follow_changes(&self, stop: CancellationToken, on_change: impl Fn(Change)) {
        while !stop.is_cancelled() {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for link changes; retrying");
                    pause(&stop).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANGES_CHANNEL).await {
                tracing::warn!(error = %e, "cannot listen for link changes; retrying");
                pause(&stop).await;
                continue;
            }
            on_change(Change::Unknown);
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = listener.try_recv() => next,
                };
                match next {
                    Ok(Some(note)) => on_change(Change::Code(note.payload().to_owned())),
                    // The connection dropped. Reconnect with a fresh listener, which reports
                    // `Unknown` once it listens again: forgetting the cache now, while the
                    // database may be away, would turn cached redirects into errors.
                    Ok(None) => {
                        tracing::warn!("lost the link-change listener; reconnecting");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the link-change listener; reconnecting");
                        pause(&stop).await;
                        break;
                    }
                }
            }
        }
    }
}

/// Waits a second between reconnection attempts, or less if asked to stop.
async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
    }
}

impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx takes an advisory lock, so instances starting together migrate one at a time.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn check_schema(&self) -> Result<(), StoreError> {
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        let applied = if has_table {
            let versions = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
            Some(versions)
        } else {
            None
        };
        check_applied(&MIGRATOR, applied)
    }

    async fn insert(&self, link: &Link) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        match insert_skipping(&mut conn, std::slice::from_ref(link)).await?[..] {
            [true] => Ok(()),
            _ => Err(StoreError::Conflict),
        }
    }

    async fn get(&self, code: &str) -> Result<Option<Link>, StoreError> {
        let link = sqlx::query_as::<_, Link>(&format!(
            "SELECT {COLUMNS} FROM links_with_clicks WHERE code = $1"
        ))
        .bind(code)
        .fetch_optional(&self.pool)
        .await?;
        Ok(link)
    }

    async fn destination(&self, code: &str) -> Result<Option<Destination>, StoreError> {
        self.lookups.destination(&self.pool, code).await
    }

    async fn add_clicks(&self, counts: &[(String, u64)]) -> Result<(), StoreError> {
        let (codes, clicks): (Vec<&str>, Vec<i64>) = counts
            .iter()
            .map(|(c, n)| (c.as_str(), i64::try_from(*n).unwrap_or(i64::MAX)))
            .unzip();
        // Appended, never upserted: see migrations/postgres/0004_click_log.sql.
        sqlx::query(
            "INSERT INTO click_log (code, clicks) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[])",
        )
        .bind(codes)
        .bind(clicks)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn roll_up_clicks(&self, from: &str, limit: u32) -> Result<RolledUp, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One instance at a time: two instances moving rows of the same codes would update
        // the same links in different orders and could deadlock. The others find the turn
        // taken and leave the rest to their next pass.
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(ROLL_UP_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !mine {
            return Ok(RolledUp::default());
        }
        // One statement: the counts deleted are the counts added, summed per code (a code
        // has a row per flush that counted it, so the last code's rows may go on past
        // `limit`: the next chunk starts from that code again).
        let (moved, last): (i64, Option<String>) = sqlx::query_as(
            "WITH moved AS ( \
                 DELETE FROM click_log WHERE ctid = ANY (ARRAY( \
                     SELECT ctid FROM click_log WHERE code >= $2 ORDER BY code LIMIT $1)) \
                 RETURNING code, clicks), \
             added AS ( \
                 UPDATE links SET clicks = links.clicks + m.clicks \
                 FROM (SELECT code, SUM(clicks)::bigint AS clicks FROM moved GROUP BY code) AS m \
                 WHERE links.code = m.code) \
             SELECT COUNT(*), MAX(code) FROM moved",
        )
        .bind(i64::from(limit))
        .bind(from)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RolledUp {
            moved: moved.unsigned_abs(),
            last,
        })
    }

    async fn disable(&self, code: &str, reason: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE links SET disabled_at = $1, disabled_reason = $2 \
             WHERE code = $3 AND disabled_at IS NULL",
        )
        .bind(now())
        .bind(reason)
        .bind(code)
        .execute(&mut *tx)
        .await?;
        // Delivered at commit, to every instance listening: they drop the code from their caches.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(code)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Link>, StoreError> {
        let links = sqlx::query_as::<_, Link>(&format!(
            "SELECT {COLUMNS} FROM links_with_clicks WHERE code > $1 ORDER BY code LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(links)
    }

    async fn insert_batch(&self, links: &[Link]) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = insert_skipping(&mut tx, links).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn sync_commits(&self) -> Result<(), StoreError> {
        // A commit returns once Postgres has flushed it (`synchronous_commit`, on by default).
        Ok(())
    }

    fn defers_sync(&self) -> bool {
        false
    }

    async fn import(&self, links: &[Link]) -> Result<ImportOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = insert_skipping(&mut tx, links).await?;
        let skipped = skipped(links, &inserted);
        let existing = if skipped.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as::<_, Link>(&format!(
                "SELECT {COLUMNS} FROM links_with_clicks WHERE code = ANY($1)"
            ))
            .bind(skipped.iter().map(|l| l.code.as_str()).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?
        };
        let (outcome, updates) = classify_skipped(links, &skipped, &existing);
        catch_up(&mut tx, &updates).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn insert_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, secret_hash, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.secret_hash)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let key = sqlx::query_as::<_, ApiKeyRecord>(
            "SELECT id, name, secret_hash, created_at, revoked_at FROM api_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(key)
    }

    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let keys = sqlx::query_as::<_, ApiKeyRecord>(
            "SELECT id, name, secret_hash, created_at, revoked_at FROM api_keys \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(keys)
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM links")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.unsigned_abs())
    }

    async fn totals(&self) -> Result<Totals, StoreError> {
        let row = sqlx::query_as(
            "SELECT COUNT(*), (COALESCE(SUM(clicks), 0) + \
                 (SELECT COALESCE(SUM(c.clicks), 0) FROM click_log AS c \
                  JOIN links AS l ON l.code = c.code))::bigint, \
             COUNT(disabled_at) FROM links",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Totals::from_row(row))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Inserts `links` within `tx` in one statement, skipping codes that exist already. For each
/// link, in order: whether it was inserted (a code repeated within `links` counts once, for
/// its first occurrence).
async fn insert_skipping(tx: &mut PgConnection, links: &[Link]) -> Result<Vec<bool>, StoreError> {
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO links (code, url, created_at, clicks, disabled_at, disabled_reason) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], \
                              $5::timestamptz[], $6::text[]) \
         ON CONFLICT (code) DO NOTHING RETURNING code",
    )
    .bind(links.iter().map(|l| l.code.as_str()).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.url.as_str()).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.created_at).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.clicks).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.disabled_at).collect::<Vec<_>>())
    .bind(
        links
            .iter()
            .map(|l| l.disabled_reason.as_deref())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut inserted: HashSet<String> = inserted.into_iter().collect();
    Ok(links.iter().map(|l| inserted.remove(&l.code)).collect())
}

/// Brings stored links up to the imported ones of the same identity (see [`Store::import`]):
/// clicks to the larger count, a disable carried over with its time and reason, an existing
/// disable kept. Computed in SQL, so clicks flushed meanwhile are never lost; clicks still
/// pending count towards the stored total. Links disabled here are announced at commit, so
/// instances serving this database drop them from their caches.
async fn catch_up(tx: &mut PgConnection, links: &[&Link]) -> Result<(), StoreError> {
    if links.is_empty() {
        return Ok(());
    }
    let disabled: Vec<String> = sqlx::query_scalar::<_, Option<String>>(
        "UPDATE links SET clicks = GREATEST(links.clicks, u.clicks - COALESCE( \
                 (SELECT SUM(c.clicks) FROM click_log AS c WHERE c.code = links.code), 0)::bigint), \
             disabled_at = COALESCE(links.disabled_at, u.disabled_at), \
             disabled_reason = CASE WHEN links.disabled_at IS NULL \
                 THEN u.disabled_reason ELSE links.disabled_reason END \
         FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[], $4::text[]) \
             AS u (code, clicks, disabled_at, disabled_reason) \
         WHERE links.code = u.code \
         RETURNING CASE WHEN u.disabled_at IS NOT NULL THEN links.code END",
    )
    .bind(links.iter().map(|l| l.code.as_str()).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.clicks).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.disabled_at).collect::<Vec<_>>())
    .bind(
        links
            .iter()
            .map(|l| l.disabled_reason.as_deref())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .flatten()
    .collect();
    if !disabled.is_empty() {
        sqlx::query("SELECT pg_notify($1, code) FROM UNNEST($2::text[]) AS code")
            .bind(CHANGES_CHANNEL)
            .bind(disabled)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
