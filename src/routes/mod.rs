//! Every public route. Fixed paths are declared before `/{code}`, so they are never codes.

pub(crate) mod api;
mod health;
mod pages;
mod redirect;

use axum::Router;
use axum::routing::get;

use crate::app::AppState;

/// The routes, before state and layers are added.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home).post(pages::create))
        .route("/static/app.css", get(pages::stylesheet))
        .route("/static/app.js", get(pages::script))
        .route("/robots.txt", get(pages::robots))
        .route("/favicon.ico", get(pages::favicon))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/{code}", get(redirect::follow))
        .nest("/api/v1", api::routes())
        .route("/api", get(api::not_found))
        .route("/api/{*rest}", get(api::not_found).post(api::not_found))
        .fallback(pages::not_found)
}
