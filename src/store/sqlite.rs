//! SQLite backend: one file, WAL journal, for a single instance.
//!
//! Pragmas, and why:
//! - `journal_mode=WAL`: readers never block the writer, so redirects keep flowing while links
//!   are created.
//! - `synchronous=FULL` by default: a create is acknowledged only once it is on disk, so it
//!   survives a crash of the process *and* of the machine. Clicks are flushed in batches, so
//!   the cost is paid once per batch, not per click. Creates commit in groups at `NORMAL`
//!   and are answered after an `fdatasync` of the WAL that began after their commit
//!   ([`Store::sync_commits`], `wal_sync`), so the next group commits while the last one is
//!   flushed; every other write commits at `FULL`. `NORMAL` for everything
//!   (`--sqlite-synchronous normal`) leaves flushing to checkpoints, still durable across a
//!   crash of the process, not of the machine.
//! - one connection for every write, apart from the readers: SQLite has one writer at a time
//!   anyway, and in WAL mode a connection's page cache is discarded whenever another
//!   connection has changed the file, so writes spread over a pool would each start from a
//!   cold cache and read their B-tree pages again (this doubled the cost of a create).
//! - checkpoints in the background for the service ([`SqliteStore::checkpoint`]), which also
//!   start the WAL over once it passes 64 MiB (after copying and flushing nearly all of it
//!   while commits go on, so the restart holds them back for milliseconds); at most 256 MiB
//!   of it kept on disk (`journal_size_limit`).
//! - `temp_store=MEMORY` for the writing connection: a statement that may fail half-way
//!   inside a transaction (a multi-row insert whose code turns out taken) keeps the pages it
//!   changes in a statement journal, which SQLite otherwise spills to a temporary file past
//!   64 KiB: a file created, written and deleted for nearly every group of creates, a third
//!   of all the writes under a flood of them. Held in memory, it is at most the pages one
//!   statement of `ROWS_PER_INSERT` rows changes (about 4 MiB), and nothing is written to
//!   a temporary directory that may be small or read-only.
//! - `busy_timeout=5s`: writers of other processes (an import, a `links disable`) queue
//!   instead of failing.
//! - `cache_size`: SQLite's 2 MiB per reading connection for the service (lookups are one
//!   index probe, and the OS caches the file), 4 MiB for the writing one, 64 MiB for bulk
//!   imports and copies ([`PoolOptions::for_bulk`]). The writer's creates touch pages all
//!   over the file, and the pass moving pending clicks into links touches every page of
//!   links: a larger cache only holds more of what the OS caches anyway (side by side, creates
//!   into a million links ran as fast with 4 MiB as with 32, and the 32 MiB filled up in every
//!   pass, 20 MiB of the service's peak memory under the benchmark's Zipf mix).
//! - redirect lookups through connections of their own, run in place on the request's
//!   thread (`sqlite_lookups`), since the driver's hand-off to a worker thread costs several
//!   times the lookup itself; in the service each keeps its read transaction for up to 10 ms,
//!   renewed at once after this process changes a link ([`SqliteStore::changing_links`]) and
//!   ended for every checkpoint.
//! - no `mmap_size`: mapped pages would count as the service's resident memory, and reads
//!   already come from the OS page cache.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, QueryBuilder, SqliteConnection, SqlitePool};

use super::db_flush;
use super::sqlite_lookups::{Lookups, MAX_SNAPSHOT_AGE};
use super::wal_sync::WalSync;
use super::{
    ImportOutcome, OpenMode, PoolOptions, RolledUp, Store, StoreError, Synchronous, Totals,
    check_applied, classify_skipped, skipped,
};
use crate::keys::ApiKeyRecord;
use crate::link::{Destination, Link, now};

/// Links in a SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Reads, and background checkpoints.
    pool: SqlitePool,
    /// Writes: one connection (see the module documentation).
    writer: SqlitePool,
    /// Whether [`SqliteStore::checkpoint`] must be called (the writer does not checkpoint).
    background_checkpoints: bool,
    /// Redirect lookups that skip the pool (none for a read-only or in-memory database).
    lookups: Option<Arc<Lookups>>,
    /// With `synchronous=full` on a file: the WAL flush that makes the commits of
    /// [`Store::insert_batch`] (run at `NORMAL`) durable, in [`Store::sync_commits`].
    wal_sync: Option<Arc<WalSync>>,
    /// The database file, where [`SqliteStore::checkpoint`] runs: flushed before a restart.
    database_file: Option<PathBuf>,
}

/// WAL frames (pages) after which [`SqliteStore::checkpoint`] restarts the log: 64 MiB of
/// 4 KiB pages.
const RESTART_AFTER_FRAMES: i64 = 16_384;

/// At most this many rounds of a passive checkpoint and a flush of the file before a restart.
const CATCH_UP_ROUNDS: usize = 4;

/// A round of a passive checkpoint and a flush that took less than this has caught up: the
/// restart after it holds writers back for about as long as the last round took.
const CAUGHT_UP: Duration = Duration::from_millis(10);

/// WAL kept on disk once restarted: more than the log reaches between restarts under a flood
/// of creates (about 120 MiB), so the file is overwritten in place rather than cut and grown
/// again every second (cutting it cost a tenth of the create rate and doubled its p99).
const WAL_KEPT_BYTES: u64 = 256 * 1024 * 1024;

/// Page cache of the writing connection, in KiB (see the module's notes).
const WRITER_CACHE_KIB: u32 = 4 * 1024;

const COLUMNS: &str = "code, url, created_at, clicks, disabled_at, disabled_reason";

/// The schema migrations of this backend, embedded in the binary.
static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

impl SqliteStore {
    /// Opens the database file named by a `sqlite:` URL: creating it if missing only in
    /// [`OpenMode::Create`], read-only in [`OpenMode::ReadOnly`].
    pub async fn connect(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        let read_only = options.open == OpenMode::ReadOnly;
        let mut connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(e.to_string()))?
            .create_if_missing(options.open == OpenMode::Create)
            .read_only(read_only)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .pragma("journal_size_limit", WAL_KEPT_BYTES.to_string())
            .pragma("cache_size", format!("-{}", options.sqlite_page_cache_kib));
        if !read_only {
            // Setting the journal mode writes to the file; a reader takes the file as it is.
            connect = connect.journal_mode(SqliteJournalMode::Wal).synchronous(
                match options.sqlite_synchronous {
                    Synchronous::Full => SqliteSynchronous::Full,
                    Synchronous::Normal => SqliteSynchronous::Normal,
                },
            );
        }
        if options.open != OpenMode::Create {
            if let Some(path) = file_of(url).filter(|path| !path.exists()) {
                return Err(StoreError::MissingDatabase(path));
            }
        }
        let writer_cache = options.sqlite_page_cache_kib.max(WRITER_CACHE_KIB);
        let mut writer_options = connect
            .clone()
            .pragma("cache_size", format!("-{writer_cache}"))
            .pragma("temp_store", "memory");
        let background_checkpoints = options.sqlite_background_checkpoints && !read_only;
        if background_checkpoints {
            writer_options = writer_options.pragma("wal_autocheckpoint", "0");
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(writer_options)
            .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        // Opened after the pools, which create the file when it may be created.
        let lookups = file_of(url).filter(|_| !read_only).and_then(|path| {
            // Snapshots are kept only where checkpoints pause them (see `sqlite_lookups`).
            let keep_for = if background_checkpoints {
                MAX_SNAPSHOT_AGE
            } else {
                Duration::ZERO
            };
            match Lookups::open(&path, options.sqlite_page_cache_kib, keep_for) {
                Ok(lookups) => Some(Arc::new(lookups)),
                Err(e) => {
                    tracing::warn!(error = %e, "redirect lookups go through the pool");
                    None
                }
            }
        });
        let wal_sync = file_of(url)
            .filter(|_| !read_only && options.sqlite_synchronous == Synchronous::Full)
            .map(|path| Arc::new(WalSync::new(&path)));
        let database_file = file_of(url).filter(|_| background_checkpoints);
        Ok(Self {
            pool,
            writer,
            background_checkpoints,
            lookups,
            wal_sync,
            database_file,
        })
    }
}

impl SqliteStore {
    /// True when the writer leaves checkpoints to [`SqliteStore::checkpoint`].
    pub fn needs_checkpoints(&self) -> bool {
        self.background_checkpoints
    }

    /// Copies what the WAL holds into the database file, as far as readers allow, from a
    /// reading connection (`PASSIVE`: it waits for nobody). Run in the background about once
    /// a second, it keeps the copying off the commits of creates (which would otherwise stall
    /// on it every thousand pages) and copies a page changed many times only once.
    ///
    /// A writer starts the WAL over only if every frame was copied when it begins; under a
    /// steady stream of commits a passive checkpoint never quite catches up, and the log
    /// would grow without end (a gigabyte in a minute of creates, each one written to freshly
    /// allocated blocks). So once the log holds more than `RESTART_AFTER_FRAMES`, a
    /// `RESTART` checkpoint copies the frames the passive ones left and syncs the file,
    /// holding writers back for that long, and the next commit starts the log from its
    /// beginning.
    ///
    /// What it holds writers back for is made short first, while commits go on: rounds of a
    /// passive pass (copying what came in during the last step) and a flush of the file
    /// (`db_flush`), until a round takes under `CAUGHT_UP`. A passive pass that does not
    /// catch up with the end of the log leaves what it copied unsynced, so the restart's sync
    /// used to write a whole second of copied pages: with a million links stored, 80–140 ms
    /// during which no create committed (the 99th percentile of creates was about 100 ms).
    /// After the rounds it has a few milliseconds of frames to copy and sync.
    ///
    /// Returns the frames in the log as the first passive checkpoint found them.
    pub async fn checkpoint(&self) -> Result<i64, StoreError> {
        let _paused = self.lookups.as_ref().map(|lookups| lookups.pause());
        let frames = self.passive_checkpoint().await?;
        if frames > RESTART_AFTER_FRAMES {
            for _ in 0..CATCH_UP_ROUNDS {
                let started = Instant::now();
                self.passive_checkpoint().await?;
                if let Some(path) = self.database_file.clone() {
                    run_blocking_io("the database flush", move || db_flush::flush(&path)).await?;
                }
                if started.elapsed() < CAUGHT_UP {
                    break;
                }
            }
            self.passive_checkpoint().await?;
            // On the writing connection: it waits its turn behind the current commit (creates
            // meanwhile gather into the next batch) instead of polling for the write lock.
            sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                .execute(&self.writer)
                .await?;
        }
        Ok(frames)
    }

    /// Held by every write that may change where a link leads: when it drops, on any way out
    /// of the write and so before it is acknowledged, the snapshots the redirect lookups
    /// keep are stale.
    fn changing_links(&self) -> Refresh<'_> {
        Refresh(self.lookups.as_deref())
    }

    /// A `PASSIVE` checkpoint; the frames in the log when it began.
    async fn passive_checkpoint(&self) -> Result<i64, StoreError> {
        let (_busy, frames, _copied): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&self.pool)
                .await?;
        Ok(frames)
    }
}

/// See [`SqliteStore::changing_links`].
struct Refresh<'a>(Option<&'a Lookups>);

impl Drop for Refresh<'_> {
    fn drop(&mut self) {
        if let Some(lookups) = self.0 {
            lookups.refresh();
        }
    }
}

/// The file a `sqlite:` URL names, made absolute (a relative one is relative to the current
/// directory, which is what an operator in the wrong directory needs to see); `None` for an
/// in-memory database.
pub(super) fn file_of(url: &str) -> Option<PathBuf> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    Some(std::path::absolute(path).unwrap_or_else(|_| path.to_owned()))
}

/// Runs a blocking file operation (`what`) on the runtime's blocking threads. Its failure is
/// the store's I/O error (503, retry); so is a task that never finished, which leaves what it
/// was to flush as unknown to be on disk as a failed flush does, not a configuration error.
async fn run_blocking_io(
    what: &'static str,
    operation: impl FnOnce() -> io::Result<()> + Send + 'static,
) -> Result<(), StoreError> {
    tokio::task::spawn_blocking(operation)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("{what} did not finish: {e}"))))
        .map_err(|e| StoreError::from(sqlx::Error::Io(e)))
}

impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn check_schema(&self) -> Result<(), StoreError> {
        let has_table: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master \
             WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
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
        let mut conn = self.writer.acquire().await?;
        let _refresh = self.changing_links();
        match insert_new(&mut conn, std::slice::from_ref(link)).await?[..] {
            [true] => Ok(()),
            _ => Err(StoreError::Conflict),
        }
    }

    async fn get(&self, code: &str) -> Result<Option<Link>, StoreError> {
        let link = sqlx::query_as::<_, Link>(&format!(
            "SELECT {COLUMNS} FROM links_with_clicks WHERE code = ?"
        ))
        .bind(code)
        .fetch_optional(&self.pool)
        .await?;
        Ok(link)
    }

    async fn destination(&self, code: &str) -> Result<Option<Destination>, StoreError> {
        // A closed store answers nothing, whichever connections it would use.
        let lookups = self.lookups.as_ref().filter(|_| !self.pool.is_closed());
        if let Some(found) = lookups.and_then(|l| l.destination(code)) {
            return Ok(found);
        }
        let found = sqlx::query_as::<_, Destination>(
            "SELECT url, disabled_at IS NOT NULL AS disabled FROM links WHERE code = ?",
        )
        .bind(code)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found)
    }

    async fn add_clicks(&self, counts: &[(String, u64)]) -> Result<(), StoreError> {
        // Multi-row statements with the counts bound, [`ROWS_PER_INSERT`] codes each (a flush
        // sends chunks of that size, so one statement): a statement per code would cost a
        // round trip to the driver's worker thread each, and counts passed as one JSON array
        // cost SQLite half as much again to take apart as to write. Several statements share
        // one transaction, so a failure adds none of the counts and the caller can retry all.
        match counts.len() {
            0 => Ok(()),
            n if n <= ROWS_PER_INSERT => upsert_clicks(&self.writer, counts).await,
            _ => {
                let mut tx = self.writer.begin().await?;
                for chunk in counts.chunks(ROWS_PER_INSERT) {
                    upsert_clicks(&mut *tx, chunk).await?;
                }
                Ok(tx.commit().await?)
            }
        }
    }

    async fn roll_up_clicks(&self, from: &str, limit: u32) -> Result<RolledUp, StoreError> {
        // `IMMEDIATE` takes the write lock at the start, so the chunk read first is still the
        // chunk when it is written (a deferred transaction that reads first may find its
        // snapshot stale at its first write, after another process's commit). A code has one
        // pending row, so the chunk is the range of codes from `from` to its last one.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let (moved, last): (i64, Option<String>) = sqlx::query_as(
            "SELECT COUNT(*), MAX(code) FROM \
             (SELECT code FROM pending_clicks WHERE code >= ?1 ORDER BY code LIMIT ?2)",
        )
        .bind(from)
        .bind(limit)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(last) = &last {
            sqlx::query(
                "UPDATE links SET clicks = links.clicks + p.clicks FROM pending_clicks AS p \
                 WHERE p.code BETWEEN ?1 AND ?2 AND links.code = p.code",
            )
            .bind(from)
            .bind(last)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM pending_clicks WHERE code BETWEEN ?1 AND ?2")
                .bind(from)
                .bind(last)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(RolledUp {
            moved: moved.unsigned_abs(),
            last,
        })
    }

    async fn disable(&self, code: &str, reason: &str) -> Result<bool, StoreError> {
        let _refresh = self.changing_links();
        let done = sqlx::query(
            "UPDATE links SET disabled_at = ?, disabled_reason = ? \
             WHERE code = ? AND disabled_at IS NULL",
        )
        .bind(now())
        .bind(reason)
        .bind(code)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Link>, StoreError> {
        let links = sqlx::query_as::<_, Link>(&format!(
            "SELECT {COLUMNS} FROM links_with_clicks WHERE code > ? ORDER BY code LIMIT ?"
        ))
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(links)
    }

    async fn insert_batch(&self, links: &[Link]) -> Result<Vec<bool>, StoreError> {
        let _refresh = self.changing_links();
        let mut conn = self.writer.acquire().await?;
        let deferred = self.defers_sync();
        if deferred {
            // Leaves the flush to `sync_commits`; every other write stays at FULL.
            sqlx::query("PRAGMA synchronous = NORMAL")
                .execute(&mut *conn)
                .await?;
        }
        let inserted = async {
            let mut tx = conn.begin().await?;
            let inserted = insert_new(&mut tx, links).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(inserted)
        }
        .await;
        if deferred {
            let restored = sqlx::query("PRAGMA synchronous = FULL")
                .execute(&mut *conn)
                .await;
            if let Err(e) = restored {
                // A connection that cannot be put back to FULL must write nothing else.
                tracing::warn!(error = %e, "closing the SQLite writer left at synchronous=NORMAL");
                conn.close_on_drop();
            }
        }
        inserted
    }

    fn defers_sync(&self) -> bool {
        self.wal_sync.is_some()
    }

    async fn sync_commits(&self) -> Result<(), StoreError> {
        let Some(wal_sync) = self.wal_sync.clone() else {
            return Ok(());
        };
        run_blocking_io("the WAL flush", move || wal_sync.sync()).await
    }

    async fn import(&self, links: &[Link]) -> Result<ImportOutcome, StoreError> {
        let _refresh = self.changing_links();
        let mut tx = self.writer.begin().await?;
        let inserted = insert_skipping(&mut tx, links).await?;
        let skipped = skipped(links, &inserted);
        let existing = if skipped.is_empty() {
            Vec::new()
        } else {
            let mut query = QueryBuilder::new(format!(
                "SELECT {COLUMNS} FROM links_with_clicks WHERE code IN ("
            ));
            let mut list = query.separated(", ");
            for link in &skipped {
                list.push_bind(&link.code);
            }
            query.push(")");
            query.build_query_as::<Link>().fetch_all(&mut *tx).await?
        };
        let (outcome, updates) = classify_skipped(links, &skipped, &existing);
        catch_up(&mut tx, &updates).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn insert_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, secret_hash, created_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.secret_hash)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let key = sqlx::query_as::<_, ApiKeyRecord>(
            "SELECT id, name, secret_hash, created_at, revoked_at FROM api_keys WHERE id = ?",
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
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(&self.writer)
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
            "SELECT COUNT(*), COALESCE(SUM(clicks), 0) + \
                 (SELECT COALESCE(SUM(p.clicks), 0) FROM pending_clicks AS p \
                  JOIN links AS l ON l.code = p.code), \
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
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// Rows per `INSERT` statement: at most 6 bound values each, well under SQLite's limit of 32,766.
const ROWS_PER_INSERT: usize = 1000;

// A chunk of the click flusher is one statement of `upsert_clicks`.
const _: () = assert!(crate::clicks::FLUSH_CHUNK_MAX <= ROWS_PER_INSERT);

/// Inserts `links` within `tx`, skipping codes that exist already. For each link, in order:
/// whether it was inserted (a code repeated within `links` counts once, for its first
/// occurrence).
///
/// One multi-row statement per [`ROWS_PER_INSERT`] links, not one per link: each statement is
/// a round trip to the driver's worker thread, and bulk imports and busy create batches would
/// spend their time there.
async fn insert_skipping(
    tx: &mut SqliteConnection,
    links: &[Link],
) -> Result<Vec<bool>, StoreError> {
    let mut inserted = HashSet::with_capacity(links.len());
    for chunk in links.chunks(ROWS_PER_INSERT) {
        let mut query = insert_values(chunk);
        query.push(" ON CONFLICT (code) DO NOTHING RETURNING code");
        let codes: Vec<String> = query.build_query_scalar().fetch_all(&mut *tx).await?;
        inserted.extend(codes);
    }
    Ok(links.iter().map(|l| inserted.remove(&l.code)).collect())
}

/// Inserts new links within `tx` (the creates of one commit), like [`insert_skipping`]
/// but tuned for codes that are almost never taken (random ones, and mostly fresh aliases):
/// each chunk goes in as one plain statement, and only a chunk that meets a taken code is
/// retried link by link. SQLite answers `RETURNING` through a temporary table opened and
/// closed per statement, which made up a tenth of a create's cost.
async fn insert_new(tx: &mut SqliteConnection, links: &[Link]) -> Result<Vec<bool>, StoreError> {
    let mut inserted = Vec::with_capacity(links.len());
    for chunk in links.chunks(ROWS_PER_INSERT) {
        // A failed statement is undone on its own; the transaction goes on.
        match insert_rows(tx, chunk, "").await {
            Ok(_) => inserted.extend(std::iter::repeat_n(true, chunk.len())),
            Err(StoreError::Conflict) => {
                for link in chunk {
                    let one = std::slice::from_ref(link);
                    let added = insert_rows(tx, one, " ON CONFLICT (code) DO NOTHING").await?;
                    inserted.push(added == 1);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(inserted)
}

/// `INSERT INTO links ... VALUES` the rows of `links`, then `tail`; the number of rows
/// inserted.
async fn insert_rows(
    tx: &mut SqliteConnection,
    links: &[Link],
    tail: &str,
) -> Result<u64, StoreError> {
    let mut query = insert_values(links);
    query.push(tail);
    Ok(query.build().execute(&mut *tx).await?.rows_affected())
}

/// The start of an insert of `links`, up to their values.
fn insert_values(links: &[Link]) -> QueryBuilder<'_, sqlx::Sqlite> {
    let mut query = QueryBuilder::new(
        "INSERT INTO links (code, url, created_at, clicks, disabled_at, disabled_reason) ",
    );
    query.push_values(links, |mut row, link| {
        row.push_bind(&link.code)
            .push_bind(&link.url)
            .push_bind(link.created_at)
            .push_bind(link.clicks)
            .push_bind(link.disabled_at)
            .push_bind(&link.disabled_reason);
    });
    query
}

/// Adds `counts` (at most [`ROWS_PER_INSERT`]) to the pending clicks, in one statement.
async fn upsert_clicks<'c>(
    executor: impl sqlx::SqliteExecutor<'c>,
    counts: &[(String, u64)],
) -> Result<(), StoreError> {
    let mut query = QueryBuilder::new("INSERT INTO pending_clicks (code, clicks) ");
    query.push_values(counts, |mut row, (code, n)| {
        row.push_bind(code.as_str())
            .push_bind(i64::try_from(*n).unwrap_or(i64::MAX));
    });
    query
        .push(" ON CONFLICT (code) DO UPDATE SET clicks = pending_clicks.clicks + excluded.clicks");
    // Only statements of the flusher's chunk sizes are kept prepared (multiples of
    // `FLUSH_CHUNK_MIN` up to `FLUSH_CHUNK_MAX`: four of them): the last chunk of a flush has
    // any length, and a prepared statement per length would keep up to the driver's cache of
    // them (100), each compiled for up to a thousand rows, in memory.
    let round = counts.len() % crate::clicks::FLUSH_CHUNK_MIN == 0;
    query.build().persistent(round).execute(executor).await?;
    Ok(())
}

/// Brings stored links up to the imported ones of the same identity (see [`Store::import`]):
/// clicks to the larger count, a disable carried over with its time and reason, an existing
/// disable kept. Computed in SQL, so clicks flushed meanwhile are never lost; clicks still
/// pending count towards the stored total.
async fn catch_up(tx: &mut SqliteConnection, links: &[&Link]) -> Result<(), StoreError> {
    // 4 bound values a row: well under SQLite's limit.
    for chunk in links.chunks(ROWS_PER_INSERT) {
        let mut query =
            QueryBuilder::new("WITH u (code, clicks, disabled_at, disabled_reason) AS (");
        query.push_values(chunk, |mut row, link| {
            row.push_bind(&link.code)
                .push_bind(link.clicks)
                .push_bind(link.disabled_at)
                .push_bind(&link.disabled_reason);
        });
        query.push(
            ") UPDATE links SET clicks = max(links.clicks, u.clicks - coalesce( \
                 (SELECT p.clicks FROM pending_clicks AS p WHERE p.code = links.code), 0)), \
             disabled_at = coalesce(links.disabled_at, u.disabled_at), \
             disabled_reason = CASE WHEN links.disabled_at IS NULL \
                 THEN u.disabled_reason ELSE links.disabled_reason END \
             FROM u WHERE links.code = u.code",
        );
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated store on a file in `dir`, opened with `options`.
    async fn open(dir: &tempfile::TempDir, options: &PoolOptions) -> SqliteStore {
        let url = format!("sqlite://{}", dir.path().join("links.db").display());
        let store = SqliteStore::connect(&url, options).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    async fn store(dir: &tempfile::TempDir, sync: Synchronous) -> SqliteStore {
        let options = PoolOptions {
            sqlite_synchronous: sync,
            ..PoolOptions::default()
        };
        open(dir, &options).await
    }

    /// The store the service opens: its redirect lookups keep their snapshots.
    async fn service_store(dir: &tempfile::TempDir) -> SqliteStore {
        open(dir, &PoolOptions::default().for_service()).await
    }

    /// The value of pragma `name` on the writing connection.
    async fn writer_pragma(store: &SqliteStore, name: &str) -> i64 {
        sqlx::query_scalar(&format!("PRAGMA {name}"))
            .fetch_one(&store.writer)
            .await
            .unwrap()
    }

    fn link(code: &str) -> Link {
        Link::unchecked(code, "https://example.com/")
    }

    /// Every change to links this process commits is seen by the very next redirect lookup,
    /// though the lookups keep their read transactions between one and the next.
    #[tokio::test]
    async fn lookups_see_at_once_what_this_process_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = service_store(&dir).await;
        let destination = |code: &'static str| {
            let store = &store;
            async move { store.destination(code).await.unwrap() }
        };
        assert_eq!(destination("batch").await, None);
        assert_eq!(store.insert_batch(&[link("batch")]).await.unwrap(), [true]);
        assert_eq!(
            destination("batch").await.unwrap().url,
            "https://example.com/"
        );

        assert_eq!(destination("one").await, None);
        store.insert(&link("one")).await.unwrap();
        assert!(destination("one").await.is_some());

        assert_eq!(destination("imported").await, None);
        store.import(&[link("imported")]).await.unwrap();
        assert!(destination("imported").await.is_some());

        assert!(!destination("batch").await.unwrap().disabled);
        assert!(store.disable("batch", "spam").await.unwrap());
        assert!(destination("batch").await.unwrap().disabled);
        store.close().await;
    }

    /// A checkpoint copies the whole WAL though a lookup kept a snapshot older than its end.
    #[tokio::test]
    async fn kept_snapshots_hold_no_checkpoint_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = service_store(&dir).await;
        store.insert_batch(&[link("a")]).await.unwrap();
        assert!(store.destination("a").await.unwrap().is_some());
        store.add_clicks(&[("a".into(), 3)]).await.unwrap();

        store.checkpoint().await.unwrap();
        let (busy, frames, copied): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!((busy, copied), (0, frames), "every frame copied");
        store.close().await;
    }

    /// Only the batches of creates, flushed by `sync_commits`, commit at NORMAL under `full`:
    /// the writer is back at FULL (2) for every other write, whether the batch went in or not.
    #[tokio::test]
    async fn under_full_only_batches_leave_the_flush_to_sync_commits() {
        let dir = tempfile::tempdir().unwrap();
        let full = store(&dir, Synchronous::Full).await;
        assert!(full.wal_sync.is_some());
        assert_eq!(writer_pragma(&full, "synchronous").await, 2);
        assert_eq!(
            full.insert_batch(&[link("a"), link("b")]).await.unwrap(),
            [true, true]
        );
        full.sync_commits().await.unwrap();
        assert_eq!(writer_pragma(&full, "synchronous").await, 2);

        sqlx::query("DROP TABLE links")
            .execute(&full.writer)
            .await
            .unwrap();
        assert!(full.insert_batch(&[link("c")]).await.is_err());
        assert_eq!(writer_pragma(&full, "synchronous").await, 2);
        full.close().await;

        let dir = tempfile::tempdir().unwrap();
        let normal = store(&dir, Synchronous::Normal).await;
        assert!(normal.wal_sync.is_none());
        assert_eq!(normal.insert_batch(&[link("a")]).await.unwrap(), [true]);
        normal.sync_commits().await.unwrap();
        assert_eq!(writer_pragma(&normal, "synchronous").await, 1);
        normal.close().await;
    }

    /// The statement journal of the writer lives in memory, and undoing a multi-row insert
    /// half-way through (a taken code among hundreds of new ones) still leaves every other
    /// link of the batch inserted.
    #[tokio::test]
    async fn a_batch_undone_half_way_keeps_its_statement_journal_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, Synchronous::Full).await;
        assert_eq!(writer_pragma(&store, "temp_store").await, 2, "MEMORY");

        // Two statements of `ROWS_PER_INSERT` rows: the second one changes every page of the
        // table (some thirty, past the 64 KiB at which a journal on disk would spill to a file)
        // before its last row fails.
        let codes: Vec<String> = (0..2 * ROWS_PER_INSERT)
            .map(|i| format!("c{i:05}"))
            .collect();
        let first: Vec<Link> = codes.iter().step_by(2).map(|c| link(c)).collect();
        assert!(
            store
                .insert_batch(&first)
                .await
                .unwrap()
                .iter()
                .all(|&new| new)
        );
        let mut second: Vec<Link> = codes.iter().skip(1).step_by(2).map(|c| link(c)).collect();
        second.pop();
        second.push(link(&codes[0]));
        let inserted = store.insert_batch(&second).await.unwrap();
        assert_eq!(
            inserted.iter().filter(|&&new| new).count(),
            ROWS_PER_INSERT - 1
        );
        assert!(!inserted[ROWS_PER_INSERT - 1], "c00000 was taken");
        assert_eq!(
            store.totals().await.unwrap().links,
            2 * ROWS_PER_INSERT as u64 - 1
        );
        store.close().await;
    }
}
