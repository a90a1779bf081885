//! The `Authorization: Bearer shk_...` extractor guarding management endpoints.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

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
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
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
            return Err(AppError::Unauthorized.into());
        }
        Ok(Self(record))
    }
}
