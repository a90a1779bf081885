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
//! The price: a page that is not in the OS cache is read from disk while the runtime thread
//! waits, as a memory-mapped database would. Database files that fit in memory (ten million
//! links are about 1.5 GB) are read from disk once.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::link::Destination;

/// The statement of [`Lookups::destination`], prepared once per connection.
const DESTINATION: &str = "SELECT url, disabled_at IS NOT NULL FROM links WHERE code = ?1";

/// A few reading connections, tried without waiting.
#[derive(Debug)]
pub(super) struct Lookups {
    connections: Vec<Mutex<Connection>>,
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
    pub(super) fn open(path: &Path, cache_kib: u32) -> rusqlite::Result<Self> {
        let count = std::thread::available_parallelism().map_or(2, NonZeroUsize::get) + 1;
        let connections = (0..count)
            .map(|_| open_one(path, cache_kib).map(Mutex::new))
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self { connections })
    }

    /// Where `code` leads: `Some(None)` when no link has it, `None` when this could not tell
    /// without waiting (ask the pool).
    pub(super) fn destination(&self, code: &str) -> Option<Option<Destination>> {
        let start = THREAD_SLOT.with(|slot| *slot);
        let n = self.connections.len();
        (0..n)
            .find_map(|i| match self.connections[(start + i) % n].try_lock() {
                Ok(connection) => Some(query(&connection, code)),
                // A thread that panicked while holding it left nothing half-done worth keeping
                // away from: a read has no effects.
                Err(TryLockError::Poisoned(poisoned)) => Some(query(&poisoned.into_inner(), code)),
                Err(TryLockError::WouldBlock) => None,
            })?
            .inspect_err(
                |e| tracing::debug!(error = %e, "inline SQLite lookup fell back to the pool"),
            )
            .ok()
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

fn query(connection: &Connection, code: &str) -> rusqlite::Result<Option<Destination>> {
    connection
        .prepare_cached(DESTINATION)?
        .query_row([code], |row| {
            Ok(Destination {
                url: row.get(0)?,
                disabled: row.get(1)?,
            })
        })
        .optional()
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

    #[test]
    fn finds_links_and_tells_missing_ones() {
        let (_dir, path) = database();
        let lookups = Lookups::open(&path, 2000).unwrap();
        let live = lookups.destination("live").unwrap().unwrap();
        assert_eq!(live.url, "https://example.com/");
        assert!(!live.disabled);
        assert!(lookups.destination("gone").unwrap().unwrap().disabled);
        assert_eq!(lookups.destination("nope"), Some(None));
    }

    #[test]
    fn leaves_it_to_the_pool_when_every_connection_is_taken_or_failing() {
        let (_dir, path) = database();
        let lookups = Lookups::open(&path, 2000).unwrap();
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
        let lookups = Lookups::open(&path, 2000).unwrap();
        let connection = lookups.connections[0].lock().unwrap();
        let err = connection.execute("DELETE FROM links", []).unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
    }
}
