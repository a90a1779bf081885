//! `shortener`: a URL shortener service.
//!
//! One binary: the web form, redirects and a JSON API over a pluggable [`store::Store`]
//! (SQLite on one machine, Postgres for several instances). [`run`] is what `main` calls;
//! [`serve`] runs a service on a given listener and is shared with the tests.

pub mod admin;
pub mod app;
pub mod auth;
pub mod blocklist;
pub mod cache;
pub mod clicks;
pub mod config;
pub mod error;
pub mod header_timer;
pub mod healthcheck;
pub mod keys;
pub mod link;
pub mod metrics;
pub mod openapi;
pub mod progress;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod sorting;
pub mod store;
pub mod telemetry;
pub mod track;
pub mod transfer;
pub mod views;
pub mod writer;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, Settings};
use crate::config::{Cli, Command, DatabaseArgs, ServeArgs};
use crate::store::{AnyStore, OpenMode, PoolOptions, Store, StoreError};

/// Everything that can stop the process before it serves.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    /// A copy, export or import did not complete.
    #[error(transparent)]
    Transfer(#[from] transfer::TransferError),
    /// The blocklist file is unusable.
    #[error(transparent)]
    Blocklist(#[from] blocklist::BlocklistError),
    /// An operator command found nothing to act on.
    #[error("nothing was changed")]
    NothingDone,
}

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        None => run_serve(cli.serve).await,
        Some(Command::Serve(args)) => run_serve(*args).await,
        Some(Command::Healthcheck(args)) => return healthcheck::run(&args).await,
        Some(Command::Migrate(db)) => {
            with_store(&db, OpenMode::Create, async |_| {
                tracing::info!("migrations applied");
                Ok(())
            })
            .await
        }
        Some(Command::Copy(args)) => transfer::copy(&args).await.map_err(RunError::from),
        Some(Command::Export(args)) => {
            // A backup only reads: it neither creates nor migrates what it backs up.
            with_store(&args.database, OpenMode::ReadOnly, async |store| {
                Ok(transfer::export(&args, store).await?)
            })
            .await
        }
        Some(Command::Import(args)) => {
            let bulk = args.database.pool.pool_options().for_bulk();
            with_store_options(&args.database, &bulk, async |store| {
                Ok(transfer::import(&args, store).await?)
            })
            .await
        }
        Some(Command::Keys(args)) => {
            with_store(&args.database, OpenMode::Existing, async |store| {
                done(admin::keys(&args.action, store).await?)
            })
            .await
        }
        Some(Command::Links(args)) => {
            with_store(&args.database, OpenMode::Existing, async |store| {
                done(admin::links(&args.action, store).await?)
            })
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::NothingDone) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn done(changed: bool) -> Result<(), RunError> {
    if changed {
        Ok(())
    } else {
        Err(RunError::NothingDone)
    }
}

/// Opens the database of `db` in `mode`, runs `f` on it, closes it.
async fn with_store(
    db: &DatabaseArgs,
    mode: OpenMode,
    f: impl AsyncFnOnce(&AnyStore) -> Result<(), RunError>,
) -> Result<(), RunError> {
    with_store_options(db, &db.pool.pool_options().opening(mode), f).await
}

/// Like [`with_store`], with pool options of the caller's. Says on stderr which database it
/// used, so an operator in the wrong directory sees it at once.
async fn with_store_options(
    db: &DatabaseArgs,
    options: &PoolOptions,
    f: impl AsyncFnOnce(&AnyStore) -> Result<(), RunError>,
) -> Result<(), RunError> {
    let store = open_store(&db.database_url, options, db.pool.db_connect_timeout).await?;
    eprintln!("database: {}", store::describe_url(&db.database_url));
    let result = f(&store).await;
    store.close().await;
    result
}

/// Connects to the database at `url` and prepares it as `options.open` says: migrated, or for
/// [`OpenMode::ReadOnly`] only checked. Retries for up to `connect_timeout` while the database
/// is unreachable (it may still be starting).
pub async fn open_store(
    url: &str,
    options: &PoolOptions,
    connect_timeout: Duration,
) -> Result<AnyStore, StoreError> {
    let deadline = tokio::time::Instant::now() + connect_timeout;
    loop {
        let attempt = async {
            let store = store::connect(url, options).await?;
            match options.open {
                OpenMode::ReadOnly => store.check_schema().await?,
                OpenMode::Create | OpenMode::Existing => store.migrate().await?,
            }
            Ok::<_, StoreError>(store)
        };
        match attempt.await {
            Err(StoreError::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, database = %store::redact_url(url), "database unreachable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

async fn run_serve(args: ServeArgs) -> Result<(), RunError> {
    let blocklist = blocklist::Blocklist::load(args.blocklist.as_deref())?;
    let db = &args.database;
    let store = open_store(
        &db.database_url,
        &db.pool.pool_options().for_service(),
        db.pool.db_connect_timeout,
    )
    .await?;
    let listener = bind(args.listen).await?;
    let bound = listener.local_addr()?;
    let settings = Settings::from_args(&args, bound);
    if matches!(store, AnyStore::Sqlite(_)) && !bound.ip().is_loopback() {
        tracing::warn!(
            "serving on a public address with SQLite: fine for one instance, but several \
             instances on separate SQLite files do not share links. To run more than one, move \
             to Postgres (see \"Growing up\" in the README)."
        );
    }

    let handle = metrics::install();
    let stop_metrics = CancellationToken::new();
    if let Some(addr) = args.metrics_listen.0 {
        let metrics_listener = bind(addr).await?;
        tracing::info!(%addr, "metrics listening");
        let stop = stop_metrics.clone();
        let router = metrics::router(handle.clone());
        tokio::spawn(async move {
            let served = axum::serve(metrics_listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    let upkeep = tokio::spawn(async move {
        // The recorder keeps every latency sample (8 bytes a request) until they are drained
        // into the histogram's buckets here, so memory stays flat whether or not anyone
        // scrapes. Every second rather than every 5 s: at 170k redirects a second the samples
        // held 11 MiB more at peak, for no difference in throughput.
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            ticks.tick().await;
            handle.run_upkeep();
        }
    });

    let backend = store.backend();
    let public_url = settings.public_url.clone();
    let state = AppState::with_blocklist(store, settings, blocklist);
    // Signals are handled before the instance says it is ready (SIGHUP's default action, like
    // SIGTERM's, would end the process).
    #[cfg(unix)]
    reload_on_sighup(state.clone());
    let shutdown = shutdown_signal();
    tracing::info!(listen = %bound, %public_url, backend, "shortener ready");
    let result = serve(listener, state, shutdown).await;
    stop_metrics.cancel();
    upkeep.abort();
    result.map_err(RunError::from)
}

/// Reloads the blocklist whenever the process gets SIGHUP.
#[cfg(unix)]
fn reload_on_sighup(state: AppState) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the blocklist will not be reloaded");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match state.blocklist.reload() {
                Ok(entries) => tracing::info!(entries, "blocklist reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "blocklist not reloaded; the previous one stays")
                }
            }
        }
    });
}

/// Listens for SIGTERM and Ctrl-C (SIGINT) from the moment it is called; the future it returns
/// resolves on either. It is called before the instance says it is ready: a signal sent right
/// after that line must be a graceful stop, not the default action of an abrupt exit.
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &str| match signal(kind) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::error!(error = %e, signal = name, "cannot listen for a stop signal");
            None
        }
    };
    let term = listen(SignalKind::terminate(), "SIGTERM");
    let interrupt = listen(SignalKind::interrupt(), "SIGINT");
    async move {
        tokio::select! {
            () = received(term) => {},
            () = received(interrupt) => {},
        }
    }
}

/// Resolves when `signal` arrives; never without a signal to listen to.
#[cfg(unix)]
async fn received(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}

/// Runs `task` on a thread of its own, if the runtime has worker threads to drive its I/O
/// and timers from there, else as a task. Under load the click flusher sorts and encodes tens
/// of thousands of counts a second: on a runtime worker that holds up every request queued
/// behind it (on a 2-core machine the tail latency of uncached redirects doubled), while a
/// thread of its own is time-sliced with the workers by the kernel.
fn spawn_off_workers<F>(task: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::spawn_blocking(move || handle.block_on(task))
        }
        _ => tokio::spawn(task),
    }
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops gracefully:
/// readiness turns 503, the drain delay passes while requests are still served, the listener
/// closes, in-flight requests get the shutdown timeout, and click counts are flushed.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop_background = CancellationToken::new();
    let flusher = {
        let state = state.clone();
        let stop = stop_background.clone();
        spawn_off_workers(async move {
            let interval = state.settings.click_flush_interval;
            clicks::run_flusher(&state.clicks, &state.store, interval, stop).await;
        })
    };

    // With Postgres, other instances announce changed links: drop them from this cache at once.
    let follower = match &state.store {
        AnyStore::Postgres(pg) => {
            let (pg, state, stop) = (pg.clone(), state.clone(), stop_background.clone());
            Some(tokio::spawn(async move {
                pg.follow_changes(stop, |change| match change {
                    store::Change::Code(code) => state.cache.invalidate(&code),
                    store::Change::Unknown => state.cache.invalidate_all(),
                })
                .await;
            }))
        }
        AnyStore::Sqlite(_) => None,
    };

    // With SQLite, the WAL is copied into the database file here rather than by commits.
    let checkpointer = match &state.store {
        AnyStore::Sqlite(lite) if lite.needs_checkpoints() => {
            let (lite, stop) = (lite.clone(), stop_background.clone());
            Some(tokio::spawn(async move {
                while every(Duration::from_secs(1), &stop).await {
                    if let Err(e) = lite.checkpoint().await {
                        tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                    }
                }
            }))
        }
        _ => None,
    };

    let shrinker = {
        let (state, stop) = (state.clone(), stop_background.clone());
        tokio::spawn(async move {
            while every(Duration::from_secs(60), &stop).await {
                state.limits.shrink();
            }
        })
    };

    let draining = CancellationToken::new();
    let drained = {
        let state = state.clone();
        let draining = draining.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining");
            state.begin_shutdown();
            tokio::time::sleep(state.settings.drain_delay).await;
            draining.cancel();
        }
    };
    let timeout = state.settings.shutdown_timeout;
    let server = server::run(
        listener,
        app::router(state.clone()),
        state.settings.header_read_timeout,
        drained,
    );
    tokio::select! {
        () = server => {}
        () = async { draining.cancelled().await; tokio::time::sleep(timeout).await } => {
            tracing::warn!("shutdown timeout reached; closing the remaining connections");
        }
    }

    stop_background.cancel();
    if let Err(e) = flusher.await {
        tracing::error!(error = %e, "click flusher failed");
    }
    let _ = shrinker.await;
    if let Some(checkpointer) = checkpointer {
        let _ = checkpointer.await;
    }
    if let Some(follower) = follower {
        let _ = follower.await;
    }
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits `period` and answers true, or answers false as soon as `stop` is cancelled: the
/// pace of a background loop.
async fn every(period: Duration, stop: &CancellationToken) -> bool {
    tokio::time::timeout(period, stop.cancelled())
        .await
        .is_err()
}
