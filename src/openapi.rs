//! The OpenAPI 3.1 description of the JSON API, served at `/api/v1/openapi.json`.
//!
//! It is derived from the handlers' own annotations and types, so it cannot drift from what
//! the code answers; `schemathesis` checks the running service against it in CI.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes::api;

/// The API document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "shortener",
        description = "Shorten URLs and manage links. Errors are always \
            `{\"error\": {\"code\", \"message\"}}` with a 4xx or 5xx status."
    ),
    paths(api::create, api::list, api::show, api::delete),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerKeys),
    tags((name = "links", description = "Short links"))
)]
pub struct ApiDoc;

/// Declares the `api_key` scheme: `Authorization: Bearer <key>` from `shortener keys create`.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A key printed by `shortener keys create`"))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, rendered once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_pretty_json()
        .expect("the OpenAPI document serialises")
});

/// `GET /api/v1/openapi.json`.
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}
