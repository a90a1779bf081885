//! `GET /{code}`: the hot path. One cache lookup, a counter bump, a prebuilt header.

use std::borrow::Cow;
use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::cache::Target;
use crate::error::{AppError, PageError};
use crate::link::ShortCode;
use crate::ratelimit::ClientIp;
use crate::store::Store;
use crate::views;

/// Asks search engines not to index short links.
const X_ROBOTS_TAG: HeaderName = HeaderName::from_static("x-robots-tag");

/// Redirects to the link's target; 404 page for unknown codes, 410 for disabled links.
/// Only `GET` counts as a click: `HEAD` comes from link checkers, not people.
///
/// It takes the request whole rather than through extractors: each extractor is a clone and
/// a future of its own, measurable on this path.
pub async fn follow(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, PageError> {
    let ClientIp(ip) = ClientIp::of(request.extensions(), request.headers(), &state);
    state.limits.check_lookup(ip)?;
    let Some(raw) = code_segment(request.uri()) else {
        return Err(not_found(&state, ip));
    };
    if let Some(code) = raw.strip_suffix('+').and_then(ShortCode::parse) {
        return preview(&state, ip, &code).await;
    }
    let Some(code) = ShortCode::parse_borrowed(&raw) else {
        return Err(not_found(&state, ip));
    };
    match state.resolve(code).await? {
        Some(Target::Redirect(redirect)) => {
            if request.method() == Method::GET {
                state.clicks.record(code, &redirect);
            }
            crate::metrics::hot().redirect_found.increment(1);
            let status = state.settings.redirect_status;
            Ok((
                status,
                [
                    (header::LOCATION, redirect.location().clone()),
                    (header::CACHE_CONTROL, cache_control(status)),
                    (X_ROBOTS_TAG, HeaderValue::from_static("noindex")),
                ],
            )
                .into_response())
        }
        Some(Target::Gone) => {
            crate::metrics::hot().redirect_gone.increment(1);
            Err(PageError(AppError::Gone))
        }
        None => Err(not_found(&state, ip)),
    }
}

/// The `{code}` of `/{code}`, percent-decoded. Read from the path itself: axum's `Path`
/// extractor (a serde round trip) is a measurable part of a redirect.
fn code_segment(uri: &Uri) -> Option<Cow<'_, str>> {
    let raw = uri.path().strip_prefix('/')?;
    percent_encoding::percent_decode_str(raw).decode_utf8().ok()
}

/// `GET /{code}+`: where the link goes, before following it.
async fn preview(state: &AppState, ip: IpAddr, code: &ShortCode) -> Result<Response, PageError> {
    match state.store.get(code.as_str()).await? {
        Some(link) if link.is_disabled() => Err(PageError(AppError::Gone)),
        Some(link) => {
            Ok(views::preview(&state.settings.short_url(code.as_str()), &link).into_response())
        }
        None => Err(not_found(state, ip)),
    }
}

/// A 404, counted against the client's not-found budget (429 once it is spent).
fn not_found(state: &AppState, ip: IpAddr) -> PageError {
    crate::metrics::hot().redirect_not_found.increment(1);
    match state.limits.record_not_found(ip) {
        Ok(()) => PageError(AppError::NotFound),
        Err(limited) => PageError(limited),
    }
}

/// Temporary redirects must not be cached, or clicks go uncounted and edits unseen; permanent
/// ones may be, for a day, so a removed link does not live forever in browsers.
fn cache_control(status: StatusCode) -> HeaderValue {
    if matches!(
        status,
        StatusCode::MOVED_PERMANENTLY | StatusCode::PERMANENT_REDIRECT
    ) {
        HeaderValue::from_static("public, max-age=86400")
    } else {
        HeaderValue::from_static("private, no-store")
    }
}
