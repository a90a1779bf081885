//! The web form as a browser-like client uses it: plain form posts, HTML back.

use crate::support::TestApp;

async fn post_form(app: &TestApp, fields: &[(&str, &str)]) -> (u16, String) {
    let r = app
        .client
        .post(app.url("/"))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

#[tokio::test]
async fn the_home_page_has_a_labelled_form() {
    let app = TestApp::spawn().await;
    let r = app.get("/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<form method="post" action="/""#));
    assert!(html.contains(r#"<label for="url">"#) && html.contains(r#"name="url""#));
    assert!(html.contains(r#"<label for="slug">"#) && html.contains(r#"name="slug""#));
    assert!(html.contains(r#"name="viewport""#));
    assert!(html.contains(r#"<button type="submit">"#));
    app.stop().await;
}

#[tokio::test]
async fn submitting_the_form_shows_the_short_link_and_a_qr_code() {
    let app = TestApp::spawn().await;
    let (status, html) =
        post_form(&app, &[("url", "https://example.com/long"), ("slug", "")]).await;
    assert_eq!(status, 201);
    let marker = r#"id="short-url" href=""#;
    let start = html.find(marker).expect("short link shown") + marker.len();
    let short = &html[start..start + html[start..].find('"').unwrap()];
    assert!(short.starts_with(&app.base), "absolute short URL: {short}");
    assert!(html.contains("<svg"), "QR code inline");
    assert!(html.contains(r#"id="copy""#), "copy button");
    assert!(!html.contains("<?xml"));

    let r = app.client.get(short).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://example.com/long");

    let (status, html) = post_form(
        &app,
        &[("url", "https://example.com/2"), ("slug", "team-notes")],
    )
    .await;
    assert_eq!(status, 201);
    assert!(html.contains(&format!("{}/team-notes", app.base)));
    app.stop().await;
}

#[tokio::test]
async fn bad_input_returns_the_form_with_the_error_and_the_input_kept() {
    let app = TestApp::spawn().await;
    let (status, html) = post_form(&app, &[("url", "javascript:alert('x')"), ("slug", "")]).await;
    assert_eq!(status, 422);
    assert!(html.contains(r#"id="url-error""#));
    assert!(html.contains("only http:// and https:// links"));
    assert!(
        html.contains(r#"value="javascript:alert(&#39;x&#39;)""#)
            || html.contains(r#"value="javascript:alert('x')""#)
    );

    let (status, html) = post_form(
        &app,
        &[("url", "https://example.com"), ("slug", "<b>bold</b>")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains(r#"id="slug-error""#));
    assert!(!html.contains("<b>bold</b>"), "user input is escaped");
    assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"));

    let (_, html) = post_form(&app, &[("url", "ftp://x"), ("slug", "a b")]).await;
    assert!(
        html.contains(r#"id="url-error""#) && html.contains(r#"id="slug-error""#),
        "both errors at once"
    );

    post_form(&app, &[("url", "https://example.com"), ("slug", "taken")]).await;
    let (status, html) =
        post_form(&app, &[("url", "https://example.org"), ("slug", "taken")]).await;
    assert_eq!(status, 409);
    assert!(html.contains("already taken"));
    assert!(html.contains(r#"value="https://example.org""#));

    let (status, _) = post_form(&app, &[("slug", "no-url")]).await;
    assert_eq!(status, 422);

    let r = app
        .client
        .post(app.url("/"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    app.stop().await;
}

/// Asserts the headers every page must send against framing, sniffing, leaking and script
/// injection.
fn assert_page_headers(r: &reqwest::Response, page: &str) {
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{page}: {directive} missing in {csp}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{page}: {csp}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{page}");
    assert_eq!(h["x-frame-options"], "DENY", "{page}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{page}");
}

#[tokio::test]
async fn home_result_and_preview_pages_send_the_security_headers() {
    let app = TestApp::spawn().await;
    let home = app.get("/").await;
    assert_eq!(home.status(), 200);
    assert_page_headers(&home, "home");
    let result = app
        .client
        .post(app.url("/"))
        .form(&[("url", "https://example.com/headers"), ("slug", "headers")])
        .send()
        .await
        .unwrap();
    assert_eq!(result.status(), 201);
    assert_page_headers(&result, "result");
    let preview = app.get("/headers+").await;
    assert_eq!(preview.status(), 200);
    assert_page_headers(&preview, "preview");
    let error = app.get("/no-such-link").await;
    assert_page_headers(&error, "404");
    // No inline script anywhere, so the policy needs no hash or nonce.
    for html in [home.text().await.unwrap(), preview.text().await.unwrap()] {
        assert!(
            !html.contains("<script>") && !html.contains("onclick="),
            "{html}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_over_long_url_through_the_form_is_refused_next_to_the_field() {
    let app = TestApp::spawn().await;
    let long = format!("https://example.com/{}", "a".repeat(2100));
    let (status, html) = post_form(&app, &[("url", &long), ("slug", "")]).await;
    assert_eq!(status, 422);
    assert!(
        html.contains(r#"id="url-error""#),
        "error next to the field"
    );
    assert!(
        html.contains("the URL is too long: at most 2048 characters"),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"value="{long}""#)),
        "the input is kept"
    );
    // Just at the limit it works.
    let fits = format!("https://example.com/{}", "a".repeat(2048 - 20));
    assert_eq!(fits.len(), 2048);
    let (status, _) = post_form(&app, &[("url", &fits), ("slug", "")]).await;
    assert_eq!(status, 201);
    app.stop().await;
}
