//! HTML pages (maud: every interpolated value is escaped).
//!
//! Pages work without JavaScript; `/static/app.js` only adds the copy button. Every page goes
//! out through [`HtmlPage`], which sets the security headers in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// Content-Security-Policy of every page: no inline script or style, nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// An HTML response with its status and the security headers every page carries.
#[derive(Debug)]
pub struct HtmlPage {
    /// HTTP status.
    pub status: StatusCode,
    /// The document.
    pub markup: Markup,
}

impl IntoResponse for HtmlPage {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.markup).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

fn layout(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · shortener" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header { a.brand href="/" { "shortener" } }
                main { (content) }
            }
        }
    }
}

/// What the form shows: the user's input and any error next to its field.
#[derive(Debug, Default, Clone)]
pub struct FormView {
    /// The URL as typed.
    pub url: String,
    /// The alias as typed.
    pub slug: String,
    /// Error shown under the URL field.
    pub url_error: Option<String>,
    /// Error shown under the alias field.
    pub slug_error: Option<String>,
}

/// The home page: the form to shorten a link.
pub fn home(status: StatusCode, form: &FormView) -> HtmlPage {
    let content = html! {
        h1 { "Shorten a link" }
        form method="post" action="/" novalidate {
            div.field {
                label for="url" { "Long URL" }
                input #url type="url" name="url" value=(form.url) required
                    placeholder="https://example.com/a/long/page" autocomplete="url"
                    autofocus
                    aria-invalid=[form.url_error.as_ref().map(|_| "true")]
                    aria-describedby=[form.url_error.as_ref().map(|_| "url-error")];
                @if let Some(e) = &form.url_error {
                    p #url-error .error role="alert" { (e) }
                }
            }
            div.field {
                label for="slug" { "Custom alias " span.hint { "(optional)" } }
                input #slug type="text" name="slug" value=(form.slug)
                    pattern="[A-Za-z0-9][A-Za-z0-9_\\-]{1,62}[A-Za-z0-9]" maxlength="64"
                    autocomplete="off" spellcheck="false"
                    aria-invalid=[form.slug_error.as_ref().map(|_| "true")]
                    aria-describedby=(if form.slug_error.is_some() { "slug-error slug-help" } else { "slug-help" });
                p #slug-help .hint { "3 to 64 letters, digits, - or _, starting and ending with a letter or digit." }
                @if let Some(e) = &form.slug_error {
                    p #slug-error .error role="alert" { (e) }
                }
            }
            button type="submit" { "Shorten" }
        }
    };
    HtmlPage {
        status,
        markup: layout("Shorten a link", content),
    }
}

/// The page shown after a link was created.
pub fn created(short_url: &str, target: &str) -> HtmlPage {
    let content = html! {
        h1 { "Your short link" }
        p.short {
            a #short-url href=(short_url) { (short_url) }
        }
        button #copy type="button" data-copy=(short_url) hidden { "Copy link" }
        p #copy-status .hint role="status" aria-live="polite" {}
        p.target { "Goes to " a href=(target) rel="noopener noreferrer nofollow" { (target) } }
        figure.qr {
            (PreEscaped(qr_svg(short_url)))
            figcaption { "QR code of " (short_url) }
        }
        p { a href="/" { "Shorten another link" } }
    };
    HtmlPage {
        status: StatusCode::CREATED,
        markup: layout("Your short link", content),
    }
}

/// The preview of a link (`/{code}+`): where it goes, before going there.
pub fn preview(short_url: &str, link: &crate::link::Link) -> HtmlPage {
    let content = html! {
        h1 { "Where this link goes" }
        p.short { (short_url) }
        p { "leads to" }
        p.target-full { code { (link.url) } }
        dl {
            dt { "Created" } dd { (link.created_at.format("%Y-%m-%d %H:%M UTC")) }
            dt { "Clicks" } dd { (link.clicks) }
        }
        p { a href=(link.url) rel="noopener noreferrer nofollow" { "Continue to the site" } }
        p.hint { "Only continue if you trust the address above." }
    };
    HtmlPage {
        status: StatusCode::OK,
        markup: layout("Link preview", content),
    }
}

/// A page for an error: a heading by status, the message, a way back.
pub fn error_page(status: StatusCode, message: &str) -> HtmlPage {
    let heading = match status {
        StatusCode::NOT_FOUND => "Link not found",
        StatusCode::GONE => "Link disabled",
        s if s.is_server_error() => "Temporarily unavailable",
        _ => "Something is wrong with this request",
    };
    let content = html! {
        h1 { (heading) }
        p { (message) }
        @if status == StatusCode::NOT_FOUND {
            p { "Check the link for typing mistakes: codes are case-sensitive." }
        }
        p { a href="/" { "Shorten a link" } }
    };
    HtmlPage {
        status,
        markup: layout(heading, content),
    }
}

/// The QR code of `text` as an inline SVG element, labelled for screen readers. The input is
/// our own short URL, and the SVG is produced by the encoder, so it is safe to embed.
fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .quiet_zone(true)
                .build();
            // Drop the XML declaration: the element is embedded in an HTML document.
            let start = svg.find("<svg").unwrap_or(0);
            svg[start..].replacen("<svg", "<svg role=\"img\" aria-label=\"QR code\"", 1)
        }
        Err(_) => String::new(),
    }
}
