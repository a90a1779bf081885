//! Flushing a SQLite database file to disk ahead of the checkpoint that would otherwise do it
//! while holding back every write.
//!
//! A passive checkpoint copies WAL frames into the database file without waiting for anyone,
//! but it syncs the file only when it has caught up with the end of the WAL; under a steady
//! stream of commits it never does, so the pages it copies pile up unflushed in the OS. The
//! `RESTART` checkpoint that finally catches up holds the write lock, and its one sync then
//! wrote out everything the passive ones had copied since the last restart: a second of
//! creates into a database of a million links is tens of megabytes of scattered pages, and
//! the sync took 80–140 ms, which every create waiting behind it paid. [`flush`] writes those
//! pages out beforehand, while commits go on; the restart's own sync then has little left.
//!
//! It only makes that sync shorter: SQLite still syncs the file itself before the WAL can be
//! overwritten, so durability does not depend on it.
//!
//! The descriptor is opened once per file and never closed. SQLite locks the database file
//! with POSIX record locks, which belong to the process, not to a descriptor: closing *any*
//! descriptor of the file drops every lock the process holds on it, including those of the
//! connections still open (the reason SQLite itself never closes one while it holds locks).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// A file's device and inode.
type FileId = (u64, u64);

/// Descriptors opened for flushing, kept for the life of the process: a few, one per
/// database file the process checkpoints.
static OPEN: Mutex<Vec<(FileId, Arc<File>)>> = Mutex::new(Vec::new());

/// Flushes the database file at `path` (its data, and its size if it grew) to disk. Blocks
/// for as long as the disk takes.
pub(super) fn flush(path: &Path) -> io::Result<()> {
    descriptor(path)?.sync_data()
}

/// The kept descriptor of the file now at `path`, opened on first use.
fn descriptor(path: &Path) -> io::Result<Arc<File>> {
    let found = std::fs::metadata(path)?;
    let key = (found.dev(), found.ino());
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, file)) = open.iter().find(|(id, _)| *id == key) {
        return Ok(Arc::clone(file));
    }
    let file = Arc::new(File::open(path)?);
    // Kept under the identity of what was opened, should another file have been put at
    // `path` in between.
    let opened = file.metadata()?;
    open.push(((opened.dev(), opened.ino()), Arc::clone(&file)));
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn flushes_through_one_descriptor_kept_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("links.db");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
            )
            .unwrap();
        flush(&path).unwrap();
        // Closing a descriptor would drop the connection's locks: the same one every time.
        let kept = descriptor(&path).unwrap();
        assert!(Arc::ptr_eq(&kept, &descriptor(&path).unwrap()));
        assert!(Arc::strong_count(&kept) >= 2, "the registry holds it too");
        assert_eq!(
            kept.metadata().unwrap().ino(),
            std::fs::metadata(&path).unwrap().ino()
        );

        // A new file at the same path gets a descriptor of its own; the old one stays open.
        drop(connection);
        std::fs::rename(&path, dir.path().join("old.db")).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE u (y);")
            .unwrap();
        flush(&path).unwrap();
        assert!(!Arc::ptr_eq(&kept, &descriptor(&path).unwrap()));
        assert!(
            Arc::strong_count(&kept) >= 2,
            "the old descriptor is still kept"
        );
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = flush(&dir.path().join("missing.db")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
