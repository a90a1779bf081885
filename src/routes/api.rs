//! The JSON API under `/api/v1`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Authenticated, authenticate};
use crate::error::{ApiError, AppError};
use crate::link::{Link, ShortCode};
use crate::ratelimit::ClientIp;
use crate::store::Store;

/// The API routes, relative to `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/links", post(create).get(list))
        .route("/links/{code}", get(show).delete(delete))
        .fallback(not_found)
}

/// Body of `POST /api/v1/links`.
#[derive(Debug, Deserialize)]
pub struct CreateLink {
    /// The target URL.
    url: String,
    /// Optional custom alias.
    #[serde(default)]
    slug: Option<String>,
}

/// A link as the API shows it.
#[derive(Debug, Serialize)]
pub struct LinkView {
    code: String,
    short_url: String,
    url: String,
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clicks: Option<i64>,
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
async fn create(
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
async fn show(
    State(state): State<AppState>,
    code: Result<Path<String>, PathRejection>,
) -> Result<Json<LinkView>, ApiError> {
    let code = parse_code(code)?;
    let link = state
        .store
        .get(code.as_str())
        .await?
        .ok_or(AppError::NotFound)?;
    if link.is_disabled() {
        return Err(AppError::Gone.into());
    }
    Ok(Json(LinkView::new(&state, link, true)))
}

/// `DELETE /api/v1/links/{code}` (API key required): disables the link. Later visits answer
/// 410, its code is never reused, and other instances drop it from their caches.
async fn delete(
    State(state): State<AppState>,
    Authenticated(key): Authenticated,
    code: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let code = parse_code(code)?;
    let reason = format!("deleted through the API (key {})", key.id);
    if state.store.disable(code.as_str(), &reason).await? {
        state.cache.invalidate(code.as_str());
        tracing::info!(code = %code, key = %key.id, "link deleted");
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
#[derive(Debug, Deserialize)]
pub struct ListParams {
    /// Return links whose codes sort after this one (the `next` of the previous page).
    after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
}

/// One page of `GET /api/v1/links`.
#[derive(Debug, Serialize)]
pub struct LinkPage {
    links: Vec<LinkView>,
    /// Cursor of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /api/v1/links?after=CODE&limit=N` (API key required): every link, in code order,
/// a page at a time, disabled ones included.
async fn list(
    State(state): State<AppState>,
    _key: Authenticated,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<LinkPage>, ApiError> {
    let Query(params) = params.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::BadRequest("limit must be between 1 and 1000".into()).into());
    }
    let links = state.store.page(params.after.as_deref(), limit).await?;
    let next = (links.len() == limit as usize)
        .then(|| links.last().map(|l| l.code.clone()))
        .flatten();
    let links = links
        .into_iter()
        .map(|link| LinkView::new(&state, link, true))
        .collect();
    Ok(Json(LinkPage { links, next }))
}

/// JSON 404 for any other path under `/api`.
pub async fn not_found() -> ApiError {
    ApiError(AppError::UnknownEndpoint)
}
