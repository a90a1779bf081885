//! Durable storage of links behind one trait, with a SQLite and a Postgres backend.
//!
//! The backend is chosen once, from the scheme of the database URL ([`connect`]). Handlers hold
//! an [`AnyStore`], an enum that implements [`Store`] by delegation: no boxing, no
//! `async_trait`, and one conformance suite (`tests/`) runs unchanged against both backends.

mod postgres;
mod sqlite;

use std::future::Future;
use std::time::Duration;

use thiserror::Error;

use crate::keys::ApiKeyRecord;
use crate::link::{Destination, Link};

pub use postgres::{Change, PostgresStore};
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
    /// Links already present with exactly the same content: nothing to do.
    pub unchanged: u64,
    /// Codes already present with different content: left as they were, reported.
    pub conflicts: Vec<String>,
}

impl ImportOutcome {
    /// Adds another batch's outcome to this one.
    pub fn absorb(&mut self, other: ImportOutcome) {
        self.inserted += other.inserted;
        self.unchanged += other.unchanged;
        self.conflicts.extend(other.conflicts);
    }
}

/// Pool and timeout settings shared by both backends.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Most connections held open.
    pub max_connections: u32,
    /// How long to wait for a free connection (and for a new one to open).
    pub acquire_timeout: Duration,
    /// Postgres only: cache prepared statements per connection. Turn off behind a
    /// transaction-pooling proxy such as PgBouncer.
    pub statement_cache: bool,
    /// SQLite only: page cache of each connection, in KiB.
    pub sqlite_page_cache_kib: u32,
}

impl PoolOptions {
    /// The same options for bulk writes (`import`, `copy`): a 64 MiB SQLite page cache, since
    /// inserting random codes into a large table touches index pages all over the file.
    /// The service keeps SQLite's 2 MiB per connection, so its memory stays flat.
    pub fn for_bulk(mut self) -> Self {
        self.sqlite_page_cache_kib = 64 * 1024;
        self
    }
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(3),
            statement_cache: true,
            sqlite_page_cache_kib: 2000,
        }
    }
}

/// The operations the service needs from a database. Every backend passes the same
/// conformance suite.
pub trait Store: Clone + Send + Sync + 'static {
    /// Applies pending schema migrations.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Inserts a new link; [`StoreError::Conflict`] if its code exists (even disabled).
    fn insert(&self, link: &Link) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Inserts new links in one transaction: one commit, however many links (the group
    /// commit of creates). For each link, in order: `true` if it was inserted, `false` if its
    /// code was taken already (also by an earlier link of the same batch).
    fn insert_batch(
        &self,
        links: &[Link],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// The link with this code, disabled or not.
    fn get(&self, code: &str) -> impl Future<Output = Result<Option<Link>, StoreError>> + Send;

    /// Where the link with this code leads, and whether it is disabled: the uncached
    /// redirect's one query, which reads nothing else.
    fn destination(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<Destination>, StoreError>> + Send;

    /// Adds click counts; codes that do not exist are ignored.
    fn add_clicks(
        &self,
        counts: &[(String, u64)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

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
    /// transaction. Codes already present are never overwritten: identical ones are counted
    /// as unchanged, differing ones reported as conflicts.
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
    async fn insert(&self, link: &Link) -> Result<(), StoreError> {
        delegate!(self, s => s.insert(link))
    }
    async fn insert_batch(&self, links: &[Link]) -> Result<Vec<bool>, StoreError> {
        delegate!(self, s => s.insert_batch(links))
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

/// Splits the codes of `batch` that an insert skipped into unchanged and conflicting, by
/// comparing with what the database holds.
fn classify_skipped(batch: &[Link], skipped: &[&Link], existing: &[Link]) -> ImportOutcome {
    let mut outcome = ImportOutcome {
        inserted: (batch.len() - skipped.len()) as u64,
        ..Default::default()
    };
    for wanted in skipped {
        match existing.iter().find(|l| l.code == wanted.code) {
            Some(have) if have == *wanted => outcome.unchanged += 1,
            _ => outcome.conflicts.push(wanted.code.clone()),
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/links"),
            "postgres://app:***@db:5432/links"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
