//! Baseline servers for `scripts/bench.sh`. They exist only to be measured against: the
//! service's redirect path is compared, side by side, with the least a server must do to
//! answer the same request. None of this is used by the service.
//!
//! Every mode is bare axum on the same Tokio runtime and allocator as the service
//! (`#[tokio::main]`: the multi-threaded runtime, one worker per CPU the process may run on;
//! mimalloc, with the system's transparent huge pages, which the service turns off for itself)
//! and answers `GET /{code}` with `302 Found` and the link's `Location`, or `404` for an
//! unknown code:
//!
//! - `map`: looks the code up in an in-memory `HashMap`, loaded at start from the links of
//!   `--database-url` or from `--codes-file` (one `CODE` or `CODE URL` a line).
//! - `sqlite`, `postgres`: runs `SELECT url FROM links WHERE code = ?` on the database of
//!   `--database-url` through an sqlx pool sized like the service's default, with the same
//!   SQLite pragmas as the service.
//!
//! `GET /readyz` answers 200 once the server listens (after the map is loaded).
//!
//! ```sh
//! cargo run --release --example baseline -- --mode map --database-url sqlite:links.db
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::{Parser, ValueEnum};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// A bare axum server answering `GET /{code}`, to measure the service against.
#[derive(Debug, Parser)]
#[command(name = "baseline")]
struct Args {
    /// Where codes are looked up.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Database (`sqlite:PATH` or `postgres://...`): queried in `sqlite` and `postgres` modes,
    /// read once into memory in `map` mode.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// `map` mode: read codes from this file instead of a database.
    #[arg(long, conflicts_with = "database_url")]
    codes_file: Option<PathBuf>,
    /// Pool size: the service's default (`--db-max-connections`).
    #[arg(long, default_value_t = 8)]
    max_connections: u32,
}

/// Where codes are looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// An in-memory map.
    Map,
    /// A single-row SELECT on SQLite.
    Sqlite,
    /// A single-row SELECT on Postgres.
    Postgres,
}

/// The redirect target of every code, ready to answer with.
type Links = Arc<HashMap<Box<str>, HeaderValue>>;

const SELECT_URL_SQLITE: &str = "SELECT url FROM links WHERE code = ?";
const SELECT_URL_POSTGRES: &str = "SELECT url FROM links WHERE code = $1";

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The service's allocator, so the comparison is of the request path, not of allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let database_url = || {
        args.database_url
            .as_deref()
            .ok_or("--database-url (or DATABASE_URL) is required in this mode")
    };
    let started = Instant::now();
    let app = match args.mode {
        Mode::Map => {
            let links = match &args.codes_file {
                Some(path) => links_from_file(path)?,
                None => links_from_database(database_url()?).await?,
            };
            eprintln!(
                "baseline: {} links in memory ({:.2?})",
                links.len(),
                started.elapsed()
            );
            probe()
                .route("/{code}", get(from_map))
                .with_state(Arc::new(links))
        }
        Mode::Sqlite => {
            let pool = sqlite_pool(database_url()?, args.max_connections).await?;
            probe().route("/{code}", get(from_sqlite)).with_state(pool)
        }
        Mode::Postgres => {
            let pool = PgPoolOptions::new()
                .max_connections(args.max_connections)
                .acquire_timeout(Duration::from_secs(3))
                .connect(database_url()?)
                .await?;
            probe()
                .route("/{code}", get(from_postgres))
                .with_state(pool)
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "baseline ({:?}) listening on {}",
        args.mode,
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// A router answering `GET /readyz`: the server is ready once it listens.
fn probe<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/readyz", get(|| async { "ready\n" }))
}

/// The same connection settings as the service's SQLite store.
async fn sqlite_pool(url: &str, max_connections: u32) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
        .await
}

fn links_from_file(path: &std::path::Path) -> Result<HashMap<Box<str>, HeaderValue>, Failure> {
    let text = std::fs::read_to_string(path)?;
    let mut links = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(code) = fields.next() else { continue };
        let url = match fields.next() {
            Some(url) => HeaderValue::from_str(url)?,
            None => HeaderValue::from_str(&format!("https://example.com/{code}"))?,
        };
        links.insert(code.into(), url);
    }
    Ok(links)
}

/// Every enabled link of the database, read in pages in code order.
async fn links_from_database(url: &str) -> Result<HashMap<Box<str>, HeaderValue>, Failure> {
    const PAGE: i64 = 50_000;
    // Keyset paging keeps memory flat however many links there are.
    let (lite, pg) = if url.starts_with("postgres") {
        (None, Some(PgPool::connect(url).await?))
    } else {
        (Some(sqlite_pool(url, 1).await?), None)
    };
    let mut links = HashMap::new();
    let mut after = String::new();
    loop {
        let page: Vec<(String, String, bool)> = if let Some(pool) = &lite {
            sqlx::query_as(
                "SELECT code, url, disabled_at IS NULL FROM links \
                 WHERE code > ? ORDER BY code LIMIT ?",
            )
            .bind(&after)
            .bind(PAGE)
            .fetch_all(pool)
            .await?
        } else if let Some(pool) = &pg {
            sqlx::query_as(
                "SELECT code, url, disabled_at IS NULL FROM links \
                 WHERE code > $1 ORDER BY code LIMIT $2",
            )
            .bind(&after)
            .bind(PAGE)
            .fetch_all(pool)
            .await?
        } else {
            Vec::new()
        };
        let Some((last, _, _)) = page.last() else {
            break;
        };
        after.clone_from(last);
        for (code, url, enabled) in page {
            if enabled {
                links.insert(code.into(), HeaderValue::try_from(url)?);
            }
        }
    }
    Ok(links)
}

fn redirect(url: HeaderValue) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, url)]).into_response()
}

async fn from_map(State(links): State<Links>, Path(code): Path<String>) -> Response {
    match links.get(code.as_str()) {
        Some(url) => redirect(url.clone()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn from_sqlite(State(pool): State<SqlitePool>, Path(code): Path<String>) -> Response {
    let url = sqlx::query_scalar::<_, String>(SELECT_URL_SQLITE)
        .bind(code)
        .fetch_optional(&pool)
        .await;
    answer(url)
}

async fn from_postgres(State(pool): State<PgPool>, Path(code): Path<String>) -> Response {
    let url = sqlx::query_scalar::<_, String>(SELECT_URL_POSTGRES)
        .bind(code)
        .fetch_optional(&pool)
        .await;
    answer(url)
}

fn answer(url: Result<Option<String>, sqlx::Error>) -> Response {
    match url {
        Ok(Some(url)) => match HeaderValue::try_from(url) {
            Ok(url) => redirect(url),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            eprintln!("baseline: query failed: {e}");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
