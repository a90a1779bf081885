//! The `Authorization: Bearer shk_...` extractor guarding management endpoints.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use crate::app::AppState;
use crate::error::{ApiError, AppError};
use crate::keys::{self, ApiKeyRecord};
use crate::store::Store;

/// A request that presented a valid, unrevoked API key.
#[derive(Debug)]
pub struct Authenticated(pub ApiKeyRecord);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match authenticate(&parts.headers, state).await? {
            Some(record) => Ok(Self(record)),
            None => Err(AppError::Unauthorized.into()),
        }
    }
}

/// The key a request presents: `None` without an `Authorization` header, an error when one is
/// sent but is not a valid, unrevoked key (a typo must not silently fall back to anonymous).
pub async fn authenticate(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Option<ApiKeyRecord>, AppError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(AppError::Unauthorized)?;
    let (id, secret) = keys::split(presented).ok_or(AppError::Unauthorized)?;
    let record = state
        .store
        .get_key(id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    if !keys::verify(&record, secret) {
        return Err(AppError::Unauthorized);
    }
    Ok(Some(record))
}
