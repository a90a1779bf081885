//! Redirect lookups on SQLite, run in place on the thread that serves the request.
//!
//! A lookup of one code is an index probe on pages the OS already caches: a few microseconds
//! of SQLite. Through sqlx it costs about thirty more, since every statement travels to the
//! connection's worker thread and back (two wake-ups and a context switch each way, on a
//! machine whose cores the requests already keep busy). So uncached redirects read through a
//! few connections of their own, opened with rusqlite on the same file and the same bundled
//! SQLite, each held by one thread at a time and never waiting: a lookup that would have to
//! wait (every connection taken, the database locked) or that fails returns `None`, and the
//! caller asks the sqlx pool instead, which waits, retries and reports errors as every other
//! query does.
//!
//! In the service, a connection keeps its read transaction from one lookup to the next, for
//! at most [`MAX_SNAPSHOT_AGE`]. A statement run on its own begins and ends a read
//! transaction, and in WAL mode each of those takes or gives back a shared lock on the WAL
//! index, an `fcntl` call: 1.2 µs each here (`perf`), two of them a quarter of what an
//! uncached lookup cost. Side by side, uncached redirects went 8-26% faster (6 pairs, every
//! one faster). What a kept snapshot must not hide or hold back:
//! - links this process changed: the store calls [`Lookups::refresh`] after each such commit,
//!   before it is acknowledged, and every lookup after that starts a fresh transaction. So a
//!   link is found as soon as its create is answered, and a disabled one stops redirecting
//!   at once. The click counts written every second do not refresh: a lookup reads no count.
//! - links changed by another process (a `shortener links disable` run against the file):
//!   seen within [`MAX_SNAPSHOT_AGE`].
//! - checkpoints: a checkpoint copies the WAL only up to the oldest snapshot still read, and
//!   one that restarts the log waits for every reader. So the checkpointer holds a
//!   [`Paused`] while it runs: it ends every kept transaction, and meanwhile lookups end
//!   theirs with their statement, as they always did. A transaction left open by the last
//!   lookup before a quiet spell is ended by the next checkpoint, within a second.
//!
//! The price: a page that is not in the OS cache is read from disk while the runtime thread
//! waits, as a memory-mapped database would. Database files that fit in memory (ten million
//! links are about 1.5 GB) are read from disk once.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};
use std::time::Duration;

use quanta::Instant;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::link::Destination;

/// The statement of [`Lookups::destination`], prepared once per connection.
const DESTINATION: &str = "SELECT url, disabled_at IS NOT NULL FROM links WHERE code = ?1";

/// How long a connection of the service keeps one read transaction (see the module's
/// notes). Kept for 100 ms, it measured the same within the noise (3 pairs): under a load of
/// uncached redirects, a transaction serves hundreds of lookups either way.
pub(super) const MAX_SNAPSHOT_AGE: Duration = Duration::from_millis(10);

/// A few reading connections, tried without waiting.
#[derive(Debug)]
pub(super) struct Lookups {
    connections: Vec<Mutex<Reader>>,
    /// How long a connection may keep one read transaction; zero for not at all.
    keep_for: Duration,
    /// Moved by [`Lookups::refresh`]: a snapshot taken before is stale.
    generation: AtomicU64,
    /// [`Paused`] guards alive: while any is, no transaction outlives its lookup.
    pauses: AtomicUsize,
}

/// One reading connection and the read transaction it keeps, if any.
#[derive(Debug)]
struct Reader {
    connection: Connection,
    /// When the kept transaction began, and the generation it began in.
    kept: Option<(Instant, u64)>,
}

/// Which connection a thread tries first: its own, so each runtime thread keeps reusing one
/// connection (and its page cache) and threads rarely meet on one.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static THREAD_SLOT: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

impl Lookups {
    /// Opens one connection per CPU the process may run on (the runtime's worker threads),
    /// plus one, on the existing database `path`, with a page cache of `cache_kib` each.
    /// Each may keep a read transaction between lookups for `keep_for` (zero: never), in a
    /// store whose checkpoints pause that ([`Lookups::pause`]).
    pub(super) fn open(path: &Path, cache_kib: u32, keep_for: Duration) -> rusqlite::Result<Self> {
        let count = std::thread::available_parallelism().map_or(2, NonZeroUsize::get) + 1;
        let connections = (0..count)
            .map(|_| {
                let connection = open_one(path, cache_kib)?;
                Ok(Mutex::new(Reader {
                    connection,
                    kept: None,
                }))
            })
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self {
            connections,
            keep_for,
            generation: AtomicU64::new(0),
            pauses: AtomicUsize::new(0),
        })
    }

    /// Where `code` leads: `Some(None)` when no link has it, `None` when this could not tell
    /// without waiting (ask the pool).
    pub(super) fn destination(&self, code: &str) -> Option<Option<Destination>> {
        let start = THREAD_SLOT.with(|slot| *slot);
        let n = self.connections.len();
        (0..n)
            .find_map(|i| match self.connections[(start + i) % n].try_lock() {
                Ok(mut reader) => Some(self.query(&mut reader, code)),
                // A thread that panicked while holding it left nothing half-done worth keeping
                // away from: a read has no effects, and `query` ends a transaction it finds
                // in doubt.
                Err(TryLockError::Poisoned(poisoned)) => {
                    Some(self.query(&mut poisoned.into_inner(), code))
                }
                Err(TryLockError::WouldBlock) => None,
            })?
            .inspect_err(
                |e| tracing::debug!(error = %e, "inline SQLite lookup fell back to the pool"),
            )
            .ok()
    }

    /// Marks every kept snapshot stale: called after this process commits a change to links,
    /// before the change is acknowledged.
    pub(super) fn refresh(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Ends every kept read transaction and keeps none until the guard is dropped: for a
    /// checkpoint, which no snapshot should hold back. Waits for lookups under way, which
    /// never wait themselves.
    pub(super) fn pause(&self) -> Paused<'_> {
        self.pauses.fetch_add(1, Ordering::SeqCst);
        for reader in &self.connections {
            // A lookup that locks the connection after this sees the pause (the mutex
            // orders the two), so none keeps a transaction from here on.
            reader.lock().unwrap_or_else(PoisonError::into_inner).end();
        }
        Paused { lookups: self }
    }

    fn query(&self, reader: &mut Reader, code: &str) -> rusqlite::Result<Option<Destination>> {
        let found = self.begin(reader).and_then(|()| {
            reader
                .connection
                .prepare_cached(DESTINATION)?
                .query_row([code], |row| {
                    Ok(Destination {
                        url: row.get(0)?,
                        disabled: row.get(1)?,
                    })
                })
                .optional()
        });
        if found.is_err() {
            reader.end();
        }
        found
    }

    /// Ends the kept transaction if it may no longer serve, and keeps a new one if allowed;
    /// otherwise the statement runs in a transaction of its own.
    fn begin(&self, reader: &mut Reader) -> rusqlite::Result<()> {
        let keep = !self.keep_for.is_zero() && self.pauses.load(Ordering::SeqCst) == 0;
        let generation = self.generation.load(Ordering::SeqCst);
        let fresh =
            |(since, taken): (Instant, u64)| taken == generation && since.elapsed() < self.keep_for;
        if reader.kept.is_some_and(|kept| keep && fresh(kept)) {
            return Ok(());
        }
        reader.end();
        if keep {
            // Deferred: the read transaction starts with the statement that follows.
            reader.connection.prepare_cached("BEGIN")?.execute([])?;
            reader.kept = Some((Instant::now(), generation));
        }
        Ok(())
    }
}

impl Reader {
    /// Ends the transaction this connection is in, if any. A read has nothing to keep, so
    /// ending one that already failed is not worth reporting.
    fn end(&mut self) {
        self.kept = None;
        if !self.connection.is_autocommit() {
            let _ = self.connection.execute_batch("ROLLBACK");
        }
    }
}

/// Keeps the lookups of a [`Lookups`] from keeping read transactions while it is alive.
#[must_use = "the pause ends when this is dropped"]
pub(super) struct Paused<'a> {
    lookups: &'a Lookups,
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.lookups.pauses.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One reading connection: never waits for a lock (`busy_timeout` 0), never writes.
fn open_one(path: &Path, cache_kib: u32) -> rusqlite::Result<Connection> {
    // Not SQLITE_OPEN_READ_ONLY: a read-only connection to a WAL database cannot recover
    // the WAL index after a crash; `query_only` forbids writes just the same.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(Duration::ZERO)?;
    connection.pragma_update(None, "query_only", true)?;
    connection.pragma_update(None, "cache_size", format!("-{cache_kib}"))?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("links.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE links (code TEXT PRIMARY KEY, url TEXT NOT NULL, disabled_at INTEGER);
                 INSERT INTO links VALUES ('live', 'https://example.com/', NULL),
                                          ('gone', 'https://example.org/', 1);",
            )
            .unwrap();
        (dir, path)
    }

    /// Adds a link through a connection of its own, as another process would.
    fn add_link(path: &Path, code: &str) {
        Connection::open(path)
            .unwrap()
            .execute(
                "INSERT INTO links VALUES (?1, 'https://example.net/', NULL)",
                [code],
            )
            .unwrap();
    }

    /// Whether any of the connections is inside a transaction.
    fn keeps_any(lookups: &Lookups) -> bool {
        lookups
            .connections
            .iter()
            .any(|reader| !reader.lock().unwrap().connection.is_autocommit())
    }

    const AN_HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_kept_snapshot_serves_until_this_process_changes_a_link() {
        let (_dir, path) = database();
        let lookups = Lookups::open(&path, 2000, AN_HOUR).unwrap();
        assert_eq!(lookups.destination("new"), Some(None));
        assert!(keeps_any(&lookups));
        add_link(&path, "new");
        // The kept snapshot predates the link...
        assert_eq!(lookups.destination("new"), Some(None));
        // ...until the store says it changed links.
        lookups.refresh();
        let found = lookups.destination("new").unwrap().unwrap();
        assert_eq!(found.url, "https://example.net/");
    }

    #[test]
    fn a_kept_snapshot_expires() {
        let (_dir, path) = database();
        let lookups = Lookups::open(&path, 2000, Duration::from_millis(1)).unwrap();
        assert_eq!(lookups.destination("new"), Some(None));
        add_link(&path, "new");
        std::thread::sleep(Duration::from_millis(5));
        assert!(lookups.destination("new").unwrap().is_some());
    }

    #[test]
    fn a_pause_ends_kept_snapshots_and_keeps_none_while_it_lasts() {
        let (_dir, path) = database();
        let lookups = Lookups::open(&path, 2000, AN_HOUR).unwrap();
        assert!(lookups.destination("live").unwrap().is_some());
        assert!(keeps_any(&lookups));

        let paused = lookups.pause();
        assert!(!keeps_any(&lookups));
        add_link(&path, "new");
        assert!(lookups.destination("new").unwrap().is_some());
        assert!(!keeps_any(&lookups));

        drop(paused);
        assert!(lookups.destination("live").unwrap().is_some());
        assert!(keeps_any(&lookups));

        let never = Lookups::open(&path, 2000, Duration::ZERO).unwrap();
        assert!(never.destination("live").unwrap().is_some());
        assert!(!keeps_any(&never));
    }

    #[test]
    fn finds_links_and_tells_missing_ones() {
        let (_dir, path) = database();
        let lookups = Lookups::open(&path, 2000, Duration::ZERO).unwrap();
        let live = lookups.destination("live").unwrap().unwrap();
        assert_eq!(live.url, "https://example.com/");
        assert!(!live.disabled);
        assert!(lookups.destination("gone").unwrap().unwrap().disabled);
        assert_eq!(lookups.destination("nope"), Some(None));
    }

    #[test]
    fn leaves_it_to_the_pool_when_every_connection_is_taken_or_failing() {
        let (_dir, path) = database();
        let lookups = Lookups::open(&path, 2000, Duration::ZERO).unwrap();
        let held: Vec<_> = lookups
            .connections
            .iter()
            .map(|c| c.lock().unwrap())
            .collect();
        assert_eq!(lookups.destination("live"), None);
        drop(held);

        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("DROP TABLE links").unwrap();
        assert_eq!(lookups.destination("live"), None);
    }

    #[test]
    fn never_writes() {
        let (_dir, path) = database();
        let lookups = Lookups::open(&path, 2000, Duration::ZERO).unwrap();
        let reader = lookups.connections[0].lock().unwrap();
        let err = reader
            .connection
            .execute("DELETE FROM links", [])
            .unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
    }
}
