//! The JSON API under `/api/v1`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::auth::{Authenticated, authenticate};
use crate::error::{ApiError, AppError, ErrorBody};
use crate::link::{DisableReason, Link, ShortCode};
use crate::ratelimit::ClientIp;
use crate::store::Store;

/// The API routes, relative to `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/links", post(create).get(list))
        .route("/links/{code}", get(show).delete(delete))
        .route("/openapi.json", get(crate::openapi::document))
        // Last, so it covers every route above; axum adds the `Allow` header.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
}

/// Body of `POST /api/v1/links`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateLink {
    /// The target: an absolute `http` or `https` URL.
    #[schema(example = "https://example.com/a/long/path?q=1")]
    url: String,
    /// A custom alias instead of a random code: 3 to 64 of `A-Z a-z 0-9 - _`, starting and
    /// ending with a letter or digit, not a reserved word.
    #[serde(default)]
    #[schema(example = "spring-sale")]
    slug: Option<String>,
}

/// A link as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    /// The code in the short URL's path.
    #[schema(example = "x7Kq2mP")]
    code: String,
    /// The absolute short URL to share.
    #[schema(example = "https://sho.rt/x7Kq2mP")]
    short_url: String,
    /// Where the link redirects.
    url: String,
    /// When the link was created (RFC 3339, UTC).
    created_at: DateTime<Utc>,
    /// Redirects counted so far (written about once a second); absent on create.
    #[serde(skip_serializing_if = "Option::is_none")]
    clicks: Option<i64>,
    /// When the link was disabled; absent while it works.
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_at: Option<DateTime<Utc>>,
}

impl LinkView {
    fn new(state: &AppState, link: Link, with_clicks: bool) -> Self {
        Self {
            short_url: state.settings.short_url(&link.code),
            clicks: with_clicks.then_some(link.clicks),
            disabled_at: link.disabled_at,
            code: link.code,
            url: link.url,
            created_at: link.created_at,
        }
    }
}

/// `POST /api/v1/links`: 201 with the new link and its `Location`.
#[utoipa::path(
    post,
    path = "/api/v1/links",
    tag = "links",
    summary = "Shorten a URL",
    description = "Open to anyone unless the instance runs with `--public-create false`. \
        Requests without a key are rate limited per client.",
    request_body = CreateLink,
    security((), ("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = LinkView,
            headers(("Location" = String, description = "Path of the new link in the API"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Invalid key, or a key is required", body = ErrorBody),
        (status = 409, description = "Alias already taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "Invalid URL or alias, or a missing field", body = ErrorBody),
        (status = 429, description = "Too many creates from this client", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Json<CreateLink>, JsonRejection>,
) -> Result<Response, ApiError> {
    // Key holders are trusted integrators: not rate limited, allowed when creation is closed.
    if authenticate(&headers, &state).await?.is_none() {
        if !state.settings.public_create {
            return Err(AppError::Unauthorized.into());
        }
        state.limits.check_create(ip)?;
    }
    let Json(body) = body?;
    let link = state.create_link(&body.url, body.slug.as_deref()).await?;
    let view = LinkView::new(&state, link, false);
    let location = format!("/api/v1/links/{}", view.code);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// `GET /api/v1/links/{code}`: the link with its click count (written about once a second).
/// Open to anyone, so it shares the redirect path's not-found budget: guessing codes here is
/// no cheaper than guessing them in the browser.
#[utoipa::path(
    get,
    path = "/api/v1/links/{code}",
    tag = "links",
    summary = "Look up a link",
    description = "Open to anyone. Lookups of unknown codes are rate limited per client; a \
        client over that limit gets 429 for every lookup until its budget refills.",
    params(("code" = String, Path, description = "The link's code")),
    responses(
        (status = 200, description = "The link with its click count", body = LinkView),
        (status = 404, description = "No link has this code", body = ErrorBody),
        (status = 410, description = "The link was disabled", body = ErrorBody),
        (status = 429, description = "Too many lookups of unknown codes from this client",
            body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    code: Result<Path<String>, PathRejection>,
) -> Result<Json<LinkView>, ApiError> {
    state.limits.check_lookup(ip)?;
    let link = match parse_code(code) {
        Ok(code) => state.store.get(code.as_str()).await?,
        Err(_) => None,
    };
    let Some(link) = link else {
        state.limits.record_not_found(ip)?;
        return Err(AppError::NotFound.into());
    };
    if link.is_disabled() {
        return Err(AppError::Gone.into());
    }
    Ok(Json(LinkView::new(&state, link, true)))
}

/// Query of `DELETE /api/v1/links/{code}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Why the link is disabled (kept with the link and logged, as with
    /// `shortener links disable --reason`): one line of text, at most 500 characters.
    #[param(
        max_length = 500,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "phishing, abuse report 123"
    )]
    reason: Option<String>,
}

/// `DELETE /api/v1/links/{code}?reason=...` (API key required): disables the link. Later
/// visits answer 410, its code is never reused, and other instances drop it from their caches.
#[utoipa::path(
    delete,
    path = "/api/v1/links/{code}",
    tag = "links",
    summary = "Disable a link",
    params(("code" = String, Path, description = "The link's code"), DeleteParams),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Disabled: later visits answer 410"),
        (status = 400, description = "The reason is too long or not one line of text",
            body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No link has this code", body = ErrorBody),
        (status = 410, description = "Already disabled", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Authenticated(key): Authenticated,
    code: Result<Path<String>, PathRejection>,
    params: Result<Query<DeleteParams>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(params) = params.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let reason = match params.reason.as_deref() {
        Some(given) => DisableReason::parse_optional(given)?,
        None => None,
    };
    let code = parse_code(code)?;
    // Which key did it is kept with the reason: the row is the record of the decision.
    let stored = match &reason {
        Some(reason) => format!("{reason} (through the API, key {})", key.id),
        None => format!("deleted through the API (key {})", key.id),
    };
    if state.store.disable(code.as_str(), &stored).await? {
        state.cache.invalidate(code.as_str());
        let reason = reason.as_ref().map_or("", DisableReason::as_str);
        tracing::info!(code = %code, key = %key.id, reason, "link deleted");
        return Ok(StatusCode::NO_CONTENT);
    }
    match state.store.get(code.as_str()).await? {
        Some(_) => Err(AppError::Gone.into()),
        None => Err(AppError::NotFound.into()),
    }
}

fn parse_code(code: Result<Path<String>, PathRejection>) -> Result<ShortCode, AppError> {
    code.ok()
        .and_then(|Path(c)| ShortCode::parse(&c))
        .ok_or(AppError::NotFound)
}

/// Query of `GET /api/v1/links`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Return links whose codes sort after this one (the `next` of the previous page).
    #[param(pattern = "^[A-Za-z0-9_-]{0,64}$")]
    after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// One page of `GET /api/v1/links`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkPage {
    /// The links of this page, in code order.
    links: Vec<LinkView>,
    /// Cursor of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /api/v1/links?after=CODE&limit=N` (API key required): every link, in code order,
/// a page at a time, disabled ones included.
#[utoipa::path(
    get,
    path = "/api/v1/links",
    tag = "links",
    summary = "List links, a page at a time",
    params(ListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "One page; follow `next` for the following one", body = LinkPage),
        (status = 400, description = "Bad query parameters", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    _key: Authenticated,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<LinkPage>, ApiError> {
    let Query(params) = params.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::BadRequest("limit must be between 1 and 1000".into()).into());
    }
    // A cursor is a code: anything else (a NUL byte, say, which Postgres cannot even compare)
    // is refused before it reaches the database.
    // An empty cursor is the first page, as if absent.
    let after = match params.after.as_deref().filter(|a| !a.is_empty()) {
        Some(after) => Some(ShortCode::parse(after).ok_or_else(|| {
            AppError::BadRequest("after must be a code, the `next` of a previous page".into())
        })?),
        None => None,
    };
    let links = state
        .store
        .page(after.as_ref().map(ShortCode::as_str), limit)
        .await?;
    let next = (links.len() == limit as usize)
        .then(|| links.last().map(|l| l.code.clone()))
        .flatten();
    let links = links
        .into_iter()
        .map(|link| LinkView::new(&state, link, true))
        .collect();
    Ok(Json(LinkPage { links, next }))
}

/// JSON 404 for any other path under `/api`, whatever the method.
pub async fn not_found() -> ApiError {
    ApiError(AppError::UnknownEndpoint)
}

/// JSON 405 for a method an API path does not take (axum adds the `Allow` header).
pub async fn method_not_allowed() -> ApiError {
    ApiError(AppError::MethodNotAllowed)
}
