//! One error type for every handler, mapped once to a response: JSON for the API
//! ([`ApiError`]), an HTML page for browsers ([`PageError`]).

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use thiserror::Error;
use utoipa::ToSchema;

use crate::link::{AliasError, ReasonError, UrlError};
use crate::store::StoreError;
use crate::views;

/// Everything a request can fail with.
#[derive(Debug, Error)]
pub enum AppError {
    /// The target URL was refused.
    #[error(transparent)]
    InvalidUrl(#[from] UrlError),
    /// The custom alias was refused.
    #[error(transparent)]
    InvalidAlias(#[from] AliasError),
    /// The reason given for disabling a link was refused.
    #[error(transparent)]
    InvalidReason(#[from] ReasonError),
    /// The custom alias is in use.
    #[error("the alias \"{0}\" is already taken; choose another")]
    AliasTaken(String),
    /// No link has this code.
    #[error("there is no link with this code")]
    NotFound,
    /// No API endpoint at this path.
    #[error("there is no API endpoint at this path; see /api/v1/links")]
    UnknownEndpoint,
    /// The path exists, but not for this method (the `Allow` header lists those that work).
    #[error("this method is not allowed here; the Allow header lists the ones that are")]
    MethodNotAllowed,
    /// The link was deleted or disabled.
    #[error("this link has been disabled")]
    Gone,
    /// The body could not be read as the expected JSON or form.
    #[error("{0}")]
    BadRequest(String),
    /// The body's content type is not the one expected.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is larger than the configured limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The body parsed but its fields are wrong (e.g. `url` missing).
    #[error("{0}")]
    Unprocessable(String),
    /// No valid API key was presented.
    #[error("this needs a valid API key: send Authorization: Bearer <key>")]
    Unauthorized,
    /// Too many requests from this client; try again after this many seconds.
    #[error("too many requests; please try again in {0} seconds")]
    RateLimited(u64),
    /// This instance accepts new links only with an API key.
    #[error("this instance creates links only for holders of an API key")]
    CreateRestricted,
    /// The database cannot be reached right now.
    #[error("the service is temporarily unavailable; please try again in a moment")]
    Unavailable(#[source] StoreError),
    /// The request took longer than the request timeout.
    #[error("the request took too long; please try again in a moment")]
    Timeout,
    /// A fault of the service itself.
    #[error("something went wrong on our side; please try again later")]
    Internal(#[source] StoreError),
}

impl AppError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidUrl(_) | Self::InvalidAlias(_) | Self::Unprocessable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::AliasTaken(_) => StatusCode::CONFLICT,
            Self::NotFound | Self::UnknownEndpoint => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Gone => StatusCode::GONE,
            Self::BadRequest(_) | Self::InvalidReason(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::CreateRestricted => StatusCode::FORBIDDEN,
            Self::Unavailable(_) | Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable name, the `error.code` of API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_url",
            Self::InvalidAlias(_) => "invalid_alias",
            Self::InvalidReason(_) => "invalid_reason",
            Self::AliasTaken(_) => "alias_taken",
            Self::NotFound => "not_found",
            Self::UnknownEndpoint => "unknown_endpoint",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Gone => "gone",
            Self::BadRequest(_) => "bad_request",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unprocessable(_) => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::RateLimited(_) => "rate_limited",
            Self::CreateRestricted => "create_restricted",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout => "timeout",
            Self::Internal(_) => "internal",
        }
    }

    /// Headers some errors need: `Retry-After` on 429, `WWW-Authenticate` on 401.
    fn add_headers(&self, response: &mut Response) {
        let headers = response.headers_mut();
        match self {
            Self::RateLimited(secs) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
    }

    /// Attaches server-side failures, with their cause, to `response`, for the request layer
    /// to log once with the request id ([`crate::track`]); client mistakes are not errors of
    /// ours and are only traced at debug level.
    fn attach_failure(&self, response: &mut Response) {
        let failure = match self {
            Self::Unavailable(cause) => Failure::warn(format!("database unavailable: {cause}")),
            Self::Timeout => Failure::warn("request timed out".to_owned()),
            Self::Internal(cause) => Failure::error(format!("internal error: {cause}")),
            other => {
                tracing::debug!(error = %other, "request refused");
                return;
            }
        };
        response.extensions_mut().insert(failure);
    }
}

/// A server-side failure behind a response, logged by [`crate::track`] with the request id
/// and route of the request it failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// An error (our fault) rather than a warning (a dependency's).
    is_error: bool,
    cause: String,
}

impl Failure {
    fn warn(cause: String) -> Self {
        Self {
            is_error: false,
            cause,
        }
    }

    fn error(cause: String) -> Self {
        Self {
            is_error: true,
            cause,
        }
    }

    /// Logs the failure of one request.
    pub fn log(&self, route: &str, status: StatusCode, request_id: &str) {
        let (cause, status) = (&self.cause, status.as_u16());
        if self.is_error {
            tracing::error!(route, status, request_id, error = %cause, "request failed");
        } else {
            tracing::warn!(route, status, request_id, error = %cause, "request failed");
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable(e),
            _ => Self::Internal(e),
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json".into(),
            ),
            JsonRejection::JsonDataError(e) => Self::Unprocessable(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Self::BadRequest(e.body_text()),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<FormRejection> for AppError {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::InvalidFormContentType(_) => Self::UnsupportedMediaType(
                "the form must be sent as application/x-www-form-urlencoded".into(),
            ),
            FormRejection::FailedToDeserializeFormBody(_) => {
                Self::BadRequest("the form could not be read; please submit it again".into())
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            other => Self::BadRequest(other.body_text()),
        }
    }
}

/// An [`AppError`] answered as JSON: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

/// The JSON body of every API error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` member of [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable name, such as `invalid_url` or `alias_taken`.
    #[schema(example = "invalid_url")]
    pub code: &'static str,
    /// A sentence for a person.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let body = ErrorBody {
            error: ErrorDetail {
                code: e.code(),
                message: e.to_string(),
            },
        };
        let mut response = (e.status(), Json(body)).into_response();
        e.add_headers(&mut response);
        e.attach_failure(&mut response);
        response
    }
}

/// An [`AppError`] answered as an HTML page.
#[derive(Debug)]
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let mut response = views::error_page(e.status(), &e.to_string()).into_response();
        e.add_headers(&mut response);
        e.attach_failure(&mut response);
        response
    }
}
