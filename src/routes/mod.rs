//! Every public route. Fixed paths are declared before `/{code}`, so they are never codes.

pub(crate) mod api;
mod health;
mod pages;
mod redirect;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

use crate::app::AppState;

/// The routes, before state and layers are added. Request bodies are read only by the form and
/// the API, so only they carry the body limit (`body_limit` bytes): each layer on a route is
/// work on every request of that route, and `/{code}` needs none.
pub fn routes(body_limit: usize) -> Router<AppState> {
    let limit = DefaultBodyLimit::max(body_limit);
    Router::new()
        .route("/", get(pages::home).post(pages::create).layer(limit))
        .route("/static/app.css", get(pages::stylesheet))
        .route("/static/app.js", get(pages::script))
        .route("/robots.txt", get(pages::robots))
        .route("/favicon.ico", get(pages::favicon))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/{code}", get(redirect::follow))
        .nest("/api/v1", api::routes().layer(limit))
        .route("/api", get(api::not_found))
        .route("/api/{*rest}", get(api::not_found).post(api::not_found))
        .fallback(pages::not_found)
}
