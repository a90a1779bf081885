//! Every public route. Fixed paths are declared before `/{code}`, so they are never codes.
//! Every error under `/api` is JSON (404 and 405 included), every other one an HTML page.

pub(crate) mod api;
mod health;
mod pages;
mod redirect;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tower::Service;

use crate::app::AppState;
use crate::link;

/// Every route, as one service: redirects straight to their handler, the rest through the
/// router.
///
/// Nearly every request a shortener answers is `GET /{code}`. Through axum's router each one
/// pays for the route match, a clone of the boxed route, the handler's boxed future and the
/// route's parameters, about a tenth of a cached redirect's CPU time (measured side by side).
/// So a `GET` of one path segment goes to `redirect::follow` directly, unless the segment is
/// a reserved word: every fixed one-segment path (`/healthz`, `/robots.txt`, `/api` ...) is one
/// ([`link::is_reserved`]), so those, and everything else, take the router, which keeps
/// `/{code}` for the reserved words that are no route. `HEAD` (link checkers, not people) takes
/// the router too, which answers it with the `GET` handler's headers, `Content-Length` included.
#[derive(Clone)]
pub struct Routes {
    router: Router,
    state: AppState,
}

impl Routes {
    /// The routes of `state`'s service.
    pub fn new(state: AppState) -> Self {
        let router = routes(state.settings.body_limit).with_state(state.clone());
        Self { router, state }
    }
}

/// Whether a `method` request of `path` is for a redirect, and not for a fixed path.
fn is_redirect(method: &Method, path: &str) -> bool {
    method == Method::GET
        && path.strip_prefix('/').is_some_and(|segment| {
            !segment.is_empty() && !segment.contains('/') && !link::is_reserved(segment)
        })
}

impl Service<Request> for Routes {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if is_redirect(request.method(), request.uri().path()) {
            let state = State(self.state.clone());
            Box::pin(async move { Ok(redirect::follow(state, request).await.into_response()) })
        } else {
            Box::pin(self.router.call(request))
        }
    }
}

/// The router's routes, before state and layers are added. Request bodies are read only by the
/// form and the API, so only they carry the body limit (`body_limit` bytes): each layer on a
/// route is work on every request of that route, and `/{code}` needs none.
fn routes(body_limit: usize) -> Router<AppState> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gets_of_one_unreserved_segment_skip_the_router() {
        for path in ["/abc", "/abc+", "/%61bc", "/a.b"] {
            assert!(is_redirect(&Method::GET, path), "{path}");
        }
        for path in [
            "/",
            "/a/b",
            "/abc/",
            "/healthz",
            "/HEALTHZ",
            "/robots.txt",
            "/api",
            "/static",
        ] {
            assert!(!is_redirect(&Method::GET, path), "{path}");
        }
        for method in [Method::HEAD, Method::POST, Method::DELETE, Method::OPTIONS] {
            assert!(!is_redirect(&method, "/abc"), "{method}");
        }
    }
}
