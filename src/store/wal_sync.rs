//! Flushing a SQLite WAL to disk apart from the commits that wrote it.
//!
//! With `synchronous=FULL`, a commit returns only once its frames are on disk, and it holds
//! the database's write lock while it waits for the `fsync`: under a flood of creates the
//! writer alternates between committing a group and waiting for the disk, and the core sits
//! idle meanwhile. So the group commit of creates commits at `NORMAL` (frames handed to the
//! OS, not flushed) and answers its creates only after [`WalSync::sync`] has run: one
//! `fdatasync` of the WAL covers every transaction committed before it began, while the
//! writer already commits the next group.
//!
//! Durability is `FULL`'s: no create is answered before the frames that hold it are on disk,
//! and synced frames stay valid, since SQLite overwrites the WAL from its start only after a
//! checkpoint has copied every frame into the database file and synced it. As SQLite does
//! for a WAL it creates, the directory is synced too, the first time a WAL file is seen.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The WAL of one database file, and the last one opened.
#[derive(Debug)]
pub(super) struct WalSync {
    wal: PathBuf,
    /// The WAL file last synced, and its inode: a new file (the old one deleted when every
    /// connection closed, then created again) is opened, and its directory synced, once.
    open: Mutex<Option<(File, u64)>>,
}

impl WalSync {
    /// For the database file at `database`.
    pub(super) fn new(database: &Path) -> Self {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        Self {
            wal: wal.into(),
            open: Mutex::new(None),
        }
    }

    /// Flushes the WAL as it is now to disk. Blocks for as long as the disk takes.
    pub(super) fn sync(&self) -> io::Result<()> {
        match self.sync_existing() {
            // No WAL: the last connection to close checkpointed it into the database file,
            // synced that, and deleted it, so every commit it held is on disk.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            done => done,
        }
    }

    fn sync_existing(&self) -> io::Result<()> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let inode = std::fs::metadata(&self.wal)?.ino();
        let file = match open.take() {
            Some((file, known)) if known == inode => open.insert((file, known)),
            _ => {
                let file = File::open(&self.wal)?;
                let opened = file.metadata()?.ino();
                if let Some(dir) = self.wal.parent() {
                    File::open(dir)?.sync_all()?;
                }
                open.insert((file, opened))
            }
        };
        file.0.sync_data()
    }

    #[cfg(test)]
    fn synced_inode(&self) -> Option<u64> {
        self.open.lock().unwrap().as_ref().map(|(_, inode)| *inode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn wal_inode(path: &Path) -> u64 {
        std::fs::metadata(WalSync::new(path).wal).unwrap().ino()
    }

    #[test]
    fn syncs_the_wal_of_the_file_and_follows_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("links.db");
        let sync = WalSync::new(&path);
        assert!(sync.sync().is_ok(), "no WAL yet: nothing to sync");
        assert_eq!(sync.synced_inode(), None);

        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 CREATE TABLE t (x); INSERT INTO t VALUES (1);",
            )
            .unwrap();
        sync.sync().unwrap();
        let first = wal_inode(&path);
        assert_eq!(sync.synced_inode(), Some(first));

        // The last connection deletes the WAL; the next one to write creates another.
        drop(connection);
        assert!(sync.sync().is_ok(), "a deleted WAL was checkpointed");
        // Holding the old file open keeps its inode from being reused by the new one.
        let connection = Connection::open(&path).unwrap();
        connection.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let second = wal_inode(&path);
        assert_ne!(first, second);
        sync.sync().unwrap();
        assert_eq!(sync.synced_inode(), Some(second));
    }
}
