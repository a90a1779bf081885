//! Durable storage of links behind one trait, with a SQLite and a Postgres backend.
//!
//! The backend is chosen once, from the scheme of the database URL ([`connect`]). Handlers hold
//! an [`AnyStore`], an enum that implements [`Store`] by delegation: no boxing, no
//! `async_trait`, and one conformance suite (`tests/`) runs unchanged against both backends.

mod db_flush;
mod pg_lookups;
mod postgres;
mod sqlite;
mod sqlite_lookups;
mod wal_sync;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::keys::ApiKeyRecord;
use crate::link::{Destination, Link};

pub use postgres::{Change, PostgresStore, ROLL_UP_LOCK};
pub use sqlite::SqliteStore;

/// What can go wrong in a store, in terms the rest of the service acts on.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The code is already taken (a unique-key violation).
    #[error("the code is already taken")]
    Conflict,
    /// The database could not be reached, timed out or is out of space: worth retrying later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database URL or options are unusable.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// A SQLite file that must exist does not (it is created only by the commands that may).
    #[error(
        "there is no SQLite database at {}: check the database URL (a relative path is \
         relative to the current directory); `shortener migrate` creates an empty one",
        .0.display()
    )]
    MissingDatabase(PathBuf),
    /// A database opened read-only does not have the schema this binary expects.
    #[error("{0}")]
    Schema(String),
    /// Schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Anything else the driver reported.
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl StoreError {
    /// An equivalent error for each of several callers that shared one failed operation (a
    /// batch of creates): same kind and message. (sqlx errors cannot be cloned.)
    pub fn for_each_waiter(&self) -> Self {
        match self {
            Self::Conflict => Self::Conflict,
            Self::Unavailable(e) => Self::Unavailable(sqlx::Error::Protocol(e.to_string())),
            Self::Config(msg) => Self::Config(msg.clone()),
            Self::MissingDatabase(path) => Self::MissingDatabase(path.clone()),
            Self::Schema(msg) => Self::Schema(msg.clone()),
            Self::Migrate(e) => Self::Other(sqlx::Error::Protocol(e.to_string())),
            Self::Other(e) => Self::Other(sqlx::Error::Protocol(e.to_string())),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e),
            sqlx::Error::Database(db) if is_transient(db.code().as_deref()) => Self::Unavailable(e),
            _ => Self::Other(e),
        }
    }
}

/// Error codes that mean "try again later" rather than "this request is wrong": SQLite's
/// busy/locked/full/I-O errors and Postgres' connection, resource and shutdown classes.
fn is_transient(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    matches!(code, "5" | "6" | "10" | "13" | "261" | "517" | "3338")
        || ["08", "53", "57"]
            .iter()
            .any(|class| code.starts_with(class))
}

/// How an import of existing links went (see [`Store::import`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Links written.
    pub inserted: u64,
    /// Links already present (same code, URL and creation time) that caught up: more clicks,
    /// or disabled since.
    pub updated: u64,
    /// Links already present with nothing to catch up.
    pub unchanged: u64,
    /// Codes already present for another link (a different URL or creation time): left as
    /// they were, reported.
    pub conflicts: Vec<String>,
}

impl ImportOutcome {
    /// Adds another batch's outcome to this one.
    pub fn absorb(&mut self, other: ImportOutcome) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.conflicts.extend(other.conflicts);
    }
}

/// What one [`Store::roll_up_clicks`] moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RolledUp {
    /// Counts moved (rows of the Postgres log).
    pub moved: u64,
    /// The greatest code among them: where the next chunk of the same pass starts.
    pub last: Option<String>,
}

/// Aggregates of the links table, to tell whether a database changed while it was read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Links, disabled ones included.
    pub links: u64,
    /// Clicks over every link.
    pub clicks: u64,
    /// Disabled links.
    pub disabled: u64,
}

impl Totals {
    /// From the three aggregates as the database returns them.
    fn from_row((links, clicks, disabled): (i64, i64, i64)) -> Self {
        Self {
            links: links.unsigned_abs(),
            clicks: clicks.unsigned_abs(),
            disabled: disabled.unsigned_abs(),
        }
    }
}

/// How a command opens its database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a missing SQLite file, then migrate: the service, `migrate`, `import` and the
    /// target of `copy`.
    #[default]
    Create,
    /// The database must exist; it is migrated. For operator commands (`keys`, `links`): a
    /// mistyped path must fail, not create an empty database the service never reads.
    Existing,
    /// The database must exist, and is only read: never created, never migrated, and its
    /// schema checked instead. For the source of `copy` and for `export`.
    ReadOnly,
}

/// SQLite's `synchronous` setting: when a commit is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Synchronous {
    /// Once the WAL is flushed to disk (an `fsync` per commit, or per several groups of
    /// creates): survives a crash of the machine.
    Full,
    /// Once the OS has the WAL (flushed at checkpoints): survives a crash of the process,
    /// not a power loss.
    Normal,
}

/// How to open a database: pool and timeout settings shared by both backends, and the mode.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Whether the database may be created, and whether it is written.
    pub open: OpenMode,
    /// Most connections held open.
    pub max_connections: u32,
    /// How long to wait for a free connection (and for a new one to open).
    pub acquire_timeout: Duration,
    /// Postgres only: cache prepared statements per connection. Turn off behind a
    /// transaction-pooling proxy such as PgBouncer.
    pub statement_cache: bool,
    /// SQLite only: page cache of each connection, in KiB.
    pub sqlite_page_cache_kib: u32,
    /// SQLite only: when a commit is acknowledged.
    pub sqlite_synchronous: Synchronous,
    /// SQLite only: checkpoints are left to [`SqliteStore::checkpoint`], called by the
    /// service in the background, instead of being run by the commit that fills the WAL.
    pub sqlite_background_checkpoints: bool,
}

impl PoolOptions {
    /// The same options for bulk writes (`import`, `copy`): a 64 MiB SQLite page cache, since
    /// inserting random codes into a large table touches index pages all over the file.
    /// The service keeps SQLite's 2 MiB per connection, so its memory stays flat.
    pub fn for_bulk(mut self) -> Self {
        self.sqlite_page_cache_kib = 64 * 1024;
        self
    }

    /// The same options for the service, which checkpoints SQLite's WAL in the background.
    pub fn for_service(mut self) -> Self {
        self.sqlite_background_checkpoints = true;
        self
    }

    /// The same options, opening the database in `mode`.
    pub fn opening(mut self, mode: OpenMode) -> Self {
        self.open = mode;
        self
    }
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            open: OpenMode::Create,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(3),
            statement_cache: true,
            sqlite_page_cache_kib: 2000,
            sqlite_synchronous: Synchronous::Full,
            sqlite_background_checkpoints: false,
        }
    }
}

/// The operations the service needs from a database. Every backend passes the same
/// conformance suite.
pub trait Store: Clone + Send + Sync + 'static {
    /// Applies pending schema migrations.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Checks, changing nothing, that the schema is exactly the one this binary's migrations
    /// make: for a database that is only read ([`OpenMode::ReadOnly`]), so never migrated.
    fn check_schema(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Inserts a new link; [`StoreError::Conflict`] if its code exists (even disabled).
    fn insert(&self, link: &Link) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Inserts new links in one transaction: one commit, however many links (the group
    /// commit of creates). For each link, in order: `true` if it was inserted, `false` if its
    /// code was taken already (also by an earlier link of the same batch). The commit is
    /// durable once [`Store::sync_commits`] has returned.
    fn insert_batch(
        &self,
        links: &[Link],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Makes every batch [`Store::insert_batch`] committed before this call durable, where
    /// its commit alone did not: on SQLite with `synchronous=full`, one `fdatasync` of the
    /// WAL for all of them, so the writer can commit the next batch meanwhile (see
    /// `wal_sync`). Returns at once where a commit is durable by itself (Postgres, SQLite's
    /// `normal`).
    fn sync_commits(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the commits of [`Store::insert_batch`] wait for [`Store::sync_commits`] to be
    /// durable; if not, that call does nothing and a batch may be answered at its commit.
    fn defers_sync(&self) -> bool;

    /// The link with this code, disabled or not.
    fn get(&self, code: &str) -> impl Future<Output = Result<Option<Link>, StoreError>> + Send;

    /// Where the link with this code leads, and whether it is disabled: the uncached
    /// redirect's one query, which reads nothing else (on Postgres, lookups under way at the
    /// same time share one).
    fn destination(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<Destination>, StoreError>> + Send;

    /// Adds click counts, sorted by code (so concurrent writers lock rows in one order); codes
    /// that do not exist are ignored. They land in a small table of pending clicks (on
    /// Postgres a log, a row per code and call), which every read of a link adds in, until
    /// [`Store::roll_up_clicks`] moves them.
    fn add_clicks(
        &self,
        counts: &[(String, u64)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves up to `limit` pending click counts (rows of the Postgres log) of codes from
    /// `from` on (`""`: all of them), in code order, into their links, in one transaction.
    /// Fewer than `limit` moved: none are left from `from` on, or another instance is moving
    /// counts. A pass goes on from the last code moved, so counts added meanwhile behind it
    /// wait for the next pass rather than being picked again chunk after chunk.
    fn roll_up_clicks(
        &self,
        from: &str,
        limit: u32,
    ) -> impl Future<Output = Result<RolledUp, StoreError>> + Send;

    /// Disables a link (it then answers 410 and its code is never reused). `false` if there is
    /// no such link or it was already disabled.
    fn disable(
        &self,
        code: &str,
        reason: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Up to `limit` links with codes greater than `after`, in code order (byte order in every
    /// backend), for streaming exports and copies.
    fn page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Link>, StoreError>> + Send;

    /// Writes existing links as they are (code, timestamps and clicks kept), in one
    /// transaction. A code already present with the same URL and creation time is the same
    /// link: it catches up (clicks to the larger count, a disable carried over; never
    /// re-enabled) and counts as updated, or as unchanged when there is nothing to catch up.
    /// A code present for another link is a conflict: reported, never overwritten.
    fn import(
        &self,
        links: &[Link],
    ) -> impl Future<Output = Result<ImportOutcome, StoreError>> + Send;

    /// Stores a new API key record.
    fn insert_key(&self, key: &ApiKeyRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The API key record with this id.
    fn get_key(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ApiKeyRecord>, StoreError>> + Send;

    /// Every API key record, oldest first.
    fn list_keys(&self) -> impl Future<Output = Result<Vec<ApiKeyRecord>, StoreError>> + Send;

    /// Revokes a key; `false` if there is no such key or it was already revoked.
    fn revoke_key(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// How many links are stored, disabled ones included.
    fn count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Links, clicks and disabled links in total, read in one statement.
    fn totals(&self) -> impl Future<Output = Result<Totals, StoreError>> + Send;

    /// Checks that the database answers.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Closes every connection.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// The backend chosen at start-up from the database URL.
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// An embedded SQLite file.
    Sqlite(SqliteStore),
    /// A Postgres server.
    Postgres(PostgresStore),
}

impl AnyStore {
    /// Tells the other instances that `code` changed or now exists, so they drop what they
    /// cached about it (Postgres `NOTIFY`; nothing to do on SQLite, which has one instance).
    /// Best effort: a failure is logged, and caches expire by themselves.
    pub async fn announce(&self, code: &str) {
        if let Self::Postgres(pg) = self {
            if let Err(e) = pg.announce(code).await {
                tracing::warn!(error = %e, %code, "could not announce a change to other instances");
            }
        }
    }

    /// A short name of the backend, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Connects to the database named by `url` (`sqlite:` or `postgres:`/`postgresql:`), without
/// migrating.
pub async fn connect(url: &str, options: &PoolOptions) -> Result<AnyStore, StoreError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => Ok(AnyStore::Sqlite(SqliteStore::connect(url, options).await?)),
        Some("postgres" | "postgresql") => Ok(AnyStore::Postgres(
            PostgresStore::connect(url, options).await?,
        )),
        _ => Err(StoreError::Config(format!(
            "unsupported database URL {}: use sqlite:PATH or postgres://...",
            redact_url(url)
        ))),
    }
}

/// The URL with any password replaced by `***`, safe to log or print.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// The database a URL names, for people: a SQLite file by its absolute path (a relative one
/// depends on the current directory), anything else with its password hidden.
pub fn describe_url(url: &str) -> String {
    match sqlite::file_of(url).filter(|_| url.starts_with("sqlite:")) {
        Some(path) => format!("SQLite file {}", path.display()),
        None => redact_url(url),
    }
}

/// Delegates every [`Store`] method of [`AnyStore`] to the backend it holds.
macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call.await,
            AnyStore::Postgres($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.migrate())
    }
    async fn check_schema(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.check_schema())
    }
    async fn insert(&self, link: &Link) -> Result<(), StoreError> {
        delegate!(self, s => s.insert(link))
    }
    async fn insert_batch(&self, links: &[Link]) -> Result<Vec<bool>, StoreError> {
        delegate!(self, s => s.insert_batch(links))
    }
    async fn sync_commits(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.sync_commits())
    }
    fn defers_sync(&self) -> bool {
        match self {
            AnyStore::Sqlite(s) => s.defers_sync(),
            AnyStore::Postgres(s) => s.defers_sync(),
        }
    }
    async fn get(&self, code: &str) -> Result<Option<Link>, StoreError> {
        delegate!(self, s => s.get(code))
    }
    async fn destination(&self, code: &str) -> Result<Option<Destination>, StoreError> {
        delegate!(self, s => s.destination(code))
    }
    async fn add_clicks(&self, counts: &[(String, u64)]) -> Result<(), StoreError> {
        delegate!(self, s => s.add_clicks(counts))
    }
    async fn roll_up_clicks(&self, from: &str, limit: u32) -> Result<RolledUp, StoreError> {
        delegate!(self, s => s.roll_up_clicks(from, limit))
    }
    async fn disable(&self, code: &str, reason: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.disable(code, reason))
    }
    async fn page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Link>, StoreError> {
        delegate!(self, s => s.page(after, limit))
    }
    async fn import(&self, links: &[Link]) -> Result<ImportOutcome, StoreError> {
        delegate!(self, s => s.import(links))
    }
    async fn insert_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        delegate!(self, s => s.insert_key(key))
    }
    async fn get_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        delegate!(self, s => s.get_key(id))
    }
    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        delegate!(self, s => s.list_keys())
    }
    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.revoke_key(id))
    }
    async fn count(&self) -> Result<u64, StoreError> {
        delegate!(self, s => s.count())
    }
    async fn totals(&self) -> Result<Totals, StoreError> {
        delegate!(self, s => s.totals())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.ping())
    }
    async fn close(&self) {
        delegate!(self, s => s.close())
    }
}

/// The links of a batch insert that were not inserted (`inserted` as the insert reported it).
fn skipped<'a>(links: &'a [Link], inserted: &[bool]) -> Vec<&'a Link> {
    links
        .iter()
        .zip(inserted)
        .filter(|(_, done)| !**done)
        .map(|(link, _)| link)
        .collect()
}

/// What an import does with a link whose code the database has already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// The same link, with nothing to catch up.
    Unchanged,
    /// The same link, behind: more clicks, or disabled since.
    Update,
    /// Another link under the same code.
    Conflict,
}

/// Compares the link an import brings (`wanted`) with the one stored under its code
/// (`have`). The same code, URL and creation time make the same link, whatever its counts.
fn merge(have: &Link, wanted: &Link) -> Merge {
    if have.url != wanted.url || have.created_at != wanted.created_at {
        return Merge::Conflict;
    }
    if wanted.clicks > have.clicks || (wanted.is_disabled() && !have.is_disabled()) {
        Merge::Update
    } else {
        Merge::Unchanged
    }
}

/// Sorts the links of `batch` that an insert skipped into unchanged, to update and
/// conflicting, by comparing with what the database holds (`existing`). Returns the outcome
/// and the links to update, to be written with [`Merge::Update`]'s rules (clicks to the
/// larger count, a disable carried over).
fn classify_skipped<'a>(
    batch: &[Link],
    skipped: &[&'a Link],
    existing: &[Link],
) -> (ImportOutcome, Vec<&'a Link>) {
    let mut outcome = ImportOutcome {
        inserted: (batch.len() - skipped.len()) as u64,
        ..Default::default()
    };
    let mut updates = Vec::new();
    // By code: a re-run compares every link of a batch of thousands.
    let existing: std::collections::HashMap<&str, &Link> =
        existing.iter().map(|l| (l.code.as_str(), l)).collect();
    for &wanted in skipped {
        let have = existing.get(wanted.code.as_str());
        match have.map(|have| merge(have, wanted)) {
            Some(Merge::Unchanged) => outcome.unchanged += 1,
            Some(Merge::Update) => {
                outcome.updated += 1;
                updates.push(wanted);
            }
            // Missing would mean it was skipped for a code it repeats within the batch.
            Some(Merge::Conflict) | None => outcome.conflicts.push(wanted.code.clone()),
        }
    }
    (outcome, updates)
}

/// Compares the migration versions a database records (`None`: it has no migrations table)
/// with those of this binary's `migrator`, for [`Store::check_schema`].
fn check_applied(
    migrator: &sqlx::migrate::Migrator,
    applied: Option<Vec<i64>>,
) -> Result<(), StoreError> {
    let Some(applied) = applied else {
        return Err(StoreError::Schema(
            "the database has no shortener schema: is this the right database? \
             (`shortener migrate` creates the schema)"
                .into(),
        ));
    };
    let known: Vec<i64> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
        return Err(StoreError::Schema(format!(
            "the database's schema is newer than this binary (migration {unknown} is unknown \
             to it): use the shortener version that wrote it, or a newer one"
        )));
    }
    let missing: Vec<String> = known
        .iter()
        .filter(|v| !applied.contains(v))
        .map(i64::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::Schema(format!(
            "the database's schema is older than this binary (migrations {} not applied): \
             run `shortener migrate` on it first",
            missing.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(url: &str, clicks: i64) -> Link {
        Link {
            code: "abc".into(),
            url: url.into(),
            created_at: chrono::DateTime::UNIX_EPOCH,
            clicks,
            disabled_at: None,
            disabled_reason: None,
        }
    }

    #[test]
    fn the_same_link_catches_up_and_another_one_conflicts() {
        let have = link("https://example.com/", 5);
        assert_eq!(merge(&have, &have), Merge::Unchanged);
        assert_eq!(
            merge(&have, &link("https://example.com/", 9)),
            Merge::Update
        );
        assert_eq!(
            merge(&have, &link("https://example.com/", 2)),
            Merge::Unchanged,
            "counts never go down"
        );
        let mut disabled = have.clone();
        disabled.disabled_at = Some(chrono::DateTime::UNIX_EPOCH);
        assert_eq!(merge(&have, &disabled), Merge::Update);
        assert_eq!(
            merge(&disabled, &have),
            Merge::Unchanged,
            "never re-enabled"
        );
        assert_eq!(
            merge(&have, &link("https://example.org/", 5)),
            Merge::Conflict
        );
        let mut older = have.clone();
        older.created_at += chrono::Duration::milliseconds(1);
        assert_eq!(merge(&have, &older), Merge::Conflict);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/links"),
            "postgres://app:***@db:5432/links"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
