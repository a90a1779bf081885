//! Probes: liveness (`/healthz`) and readiness (`/readyz`).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;

use crate::app::AppState;
use crate::store::Store;

/// How long readiness waits for the database: short, so a load balancer sees an outage fast.
const READY_TIMEOUT: Duration = Duration::from_millis(1500);

/// 200 while the process runs.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when the database answers in time; 503 when it does not or while shutting down.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
        Err(_) => {
            tracing::warn!("readiness: database did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}
