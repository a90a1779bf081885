//! `shortener`: a URL shortener service.
//!
//! One binary: the web form, redirects and a JSON API over a pluggable [`store::Store`]
//! (SQLite on one machine, Postgres for several instances). [`run`] is what `main` calls;
//! [`serve`] runs a service on a given listener and is shared with the tests.

pub mod app;
pub mod cache;
pub mod clicks;
pub mod config;
pub mod error;
pub mod healthcheck;
pub mod link;
pub mod metrics;
pub mod routes;
pub mod store;
pub mod telemetry;
pub mod views;

use std::future::Future;
use std::process::ExitCode;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, Settings};
use crate::config::{Cli, Command, DatabaseArgs, ServeArgs};
use crate::store::{AnyStore, Store, StoreError};

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
}

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        None => run_serve(cli.serve).await,
        Some(Command::Serve(args)) => run_serve(*args).await,
        Some(Command::Migrate(db)) => run_migrate(&db).await,
        Some(Command::Healthcheck(args)) => return healthcheck::run(&args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects to the database named in `db` and applies migrations.
pub async fn open_store(db: &DatabaseArgs) -> Result<AnyStore, StoreError> {
    let store = store::connect(&db.database_url, &db.pool_options()).await?;
    store.migrate().await?;
    Ok(store)
}

async fn run_migrate(db: &DatabaseArgs) -> Result<(), RunError> {
    let store = open_store(db).await?;
    tracing::info!(database = %store::redact_url(&db.database_url), "migrations applied");
    store.close().await;
    Ok(())
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

async fn run_serve(args: ServeArgs) -> Result<(), RunError> {
    let store = open_store(&args.database).await?;
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
        // Histograms are drained here, so memory stays flat when nobody scrapes.
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            ticks.tick().await;
            handle.run_upkeep();
        }
    });

    tracing::info!(
        listen = %bound,
        public_url = %settings.public_url,
        backend = store.backend(),
        "shortener ready"
    );
    let state = AppState::new(store, settings);
    let result = serve(listener, state, shutdown_signal()).await;
    stop_metrics.cancel();
    upkeep.abort();
    result.map_err(RunError::from)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
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
    let stop_flusher = CancellationToken::new();
    let flusher = {
        let state = state.clone();
        let stop = stop_flusher.clone();
        tokio::spawn(async move {
            let interval = state.settings.click_flush_interval;
            clicks::run_flusher(&state.clicks, &state.store, interval, stop).await;
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
    let server = axum::serve(listener, app::router(state.clone())).with_graceful_shutdown(drained);
    let result = tokio::select! {
        result = server => result,
        () = async { draining.cancelled().await; tokio::time::sleep(timeout).await } => {
            tracing::warn!("shutdown timeout reached; closing the remaining connections");
            Ok(())
        }
    };

    stop_flusher.cancel();
    if let Err(e) = flusher.await {
        tracing::error!(error = %e, "click flusher failed");
    }
    state.store.close().await;
    tracing::info!("stopped");
    result
}
