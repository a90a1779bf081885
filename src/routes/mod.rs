//! Every public route. Fixed paths are declared before `/{code}`, so they are never codes.
//! Every error under `/api` is JSON (404 and 405 included), every other one an HTML page.

pub(crate) mod api;
mod health;
mod pages;
mod redirect;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};

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
        // Applies to the routes above only: the API answers its own 405s, in JSON.
        .method_not_allowed_fallback(pages::method_not_allowed)
        .nest("/api/v1", api::routes().layer(limit))
        // No endpoint there for any method: 404, not a 405 that would claim GET works.
        .route("/api", any(api::not_found))
        .route("/api/{*rest}", any(api::not_found))
        .fallback(pages::not_found)
}
