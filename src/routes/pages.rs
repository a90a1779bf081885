//! The web form, its result page, static assets and the HTML fallback.

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::{AppError, PageError};
use crate::link::ShortCode;
use crate::ratelimit::ClientIp;
use crate::views::{self, FormView, HtmlPage};

/// The fields of the form on `/`.
#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    url: String,
    #[serde(default)]
    slug: String,
}

/// `GET /`: the empty form.
pub async fn home() -> HtmlPage {
    views::home(StatusCode::OK, &FormView::default())
}

/// `POST /`: creates the link and shows it, or shows the form again with the error next to
/// the field and the input kept.
pub async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Result<HtmlPage, PageError> {
    if !state.settings.public_create {
        return Err(PageError(AppError::CreateRestricted));
    }
    state.limits.check_create(ip)?;
    let Form(form) = form?;
    match state.create_link(&form.url, Some(&form.slug)).await {
        Ok(link) => Ok(views::created(
            &state.settings.short_url(&link.code),
            &link.url,
        )),
        Err(e) => {
            let mut view = FormView {
                url: form.url,
                slug: form.slug,
                ..FormView::default()
            };
            match &e {
                AppError::InvalidUrl(_) => {
                    view.url_error = Some(e.to_string());
                    // Show a bad alias too, so both can be fixed in one go.
                    if !view.slug.trim().is_empty() {
                        view.slug_error = ShortCode::parse_alias(&view.slug)
                            .err()
                            .map(|a| a.to_string());
                    }
                }
                AppError::InvalidAlias(_) | AppError::AliasTaken(_) => {
                    view.slug_error = Some(e.to_string());
                }
                _ => return Err(PageError(e)),
            }
            Ok(views::home(e.status(), &view))
        }
    }
}

/// The HTML 404 for any path that is not a route.
pub async fn not_found() -> PageError {
    PageError(AppError::NotFound)
}

/// The HTML 405 for a method a page does not take (axum adds the `Allow` header).
pub async fn method_not_allowed() -> PageError {
    PageError(AppError::MethodNotAllowed)
}

/// `GET /robots.txt`: the form may be indexed, short links may not.
pub async fn robots() -> &'static str {
    "User-agent: *\nAllow: /$\nDisallow: /\n"
}

/// `GET /favicon.ico`: none, and browsers should not keep asking.
pub async fn favicon() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "public, max-age=86400")],
    )
        .into_response()
}

/// `GET /static/app.css`.
pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("../assets/app.css"))
}

/// `GET /static/app.js`.
pub async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}
