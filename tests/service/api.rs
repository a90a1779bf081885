//! The JSON API over real TCP: success, every client error, and the status codes.

use serde_json::{Value, json};

use crate::support::{TestApp, get_json};

async fn post_json(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/api/v1/links"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn create_returns_the_link_and_its_location() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/v1/links"))
        .json(&json!({ "url": "https://example.com/some/page?x=1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let code = body["code"].as_str().unwrap();
    assert_eq!(code.len(), 7);
    assert_eq!(location, format!("/api/v1/links/{code}"));
    assert_eq!(body["short_url"], app.url(&format!("/{code}")));
    assert_eq!(body["url"], "https://example.com/some/page?x=1");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));

    let shown = get_json(&app.client, &app.url(&location)).await;
    assert_eq!(shown["code"], code);
    assert_eq!(shown["clicks"], 0);
    app.stop().await;
}

#[tokio::test]
async fn custom_aliases_are_checked_and_unique() {
    let app = TestApp::spawn().await;
    let (status, body) = post_json(
        &app,
        json!({"url": "https://example.com", "slug": "my-alias"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["code"], "my-alias");

    let (status, body) = post_json(
        &app,
        json!({"url": "https://example.org", "slug": "my-alias"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(error_code(&body), "alias_taken");

    for bad in ["ab", "has space", "<script>", "-edge", "healthz", "API"] {
        let (status, body) =
            post_json(&app, json!({"url": "https://example.com", "slug": bad})).await;
        assert_eq!(status, 422, "alias {bad:?}");
        assert_eq!(error_code(&body), "invalid_alias");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    app.stop().await;
}

#[tokio::test]
async fn client_mistakes_get_clear_json_errors() {
    let app = TestApp::spawn().await;
    let url = app.url("/api/v1/links");

    // Malformed JSON: 400.
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"url\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json().await.unwrap()), "bad_request");

    // Wrong content type: 415.
    let r = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        error_code(&r.json().await.unwrap()),
        "unsupported_media_type"
    );

    // Too large: 413.
    let huge = json!({ "url": format!("https://example.com/{}", "a".repeat(100_000)) });
    let r = app.client.post(&url).json(&huge).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(&r.json().await.unwrap()), "payload_too_large");

    // Missing field: 422.
    let (status, body) = post_json(&app, json!({"target": "https://example.com"})).await;
    assert_eq!(status, 422);
    assert_eq!(error_code(&body), "invalid_request");

    // Invalid targets: 422 with a reason.
    for bad in [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "ftp://example.com/file",
        "not a url",
        "https://user:secret@example.com/",
        "",
    ] {
        let (status, body) = post_json(&app, json!({ "url": bad })).await;
        assert_eq!(status, 422, "url {bad:?}");
        assert_eq!(error_code(&body), "invalid_url");
    }
    let long = format!("https://example.com/{}", "a".repeat(2100));
    let (status, _) = post_json(&app, json!({ "url": long })).await;
    assert_eq!(status, 422);

    // A link to the shortener itself would loop.
    let (status, body) = post_json(&app, json!({ "url": app.url("/abc") })).await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shortener itself")
    );

    // Unknown codes and endpoints: JSON 404.
    let r = app.get("/api/v1/links/nothere").await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.json().await.unwrap()), "not_found");
    let r = app.get("/api/v2/whatever").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    app.stop().await;
}

#[tokio::test]
async fn wrong_methods_get_a_json_405_with_allow() {
    let app = TestApp::spawn().await;
    let send = |method: &str, path: &str| {
        app.client
            .request(method.parse().unwrap(), app.url(path))
            .send()
    };
    for (method, path, allow) in [
        ("PUT", "/api/v1/links", "POST,GET,HEAD"),
        ("PATCH", "/api/v1/links/abc1234", "GET,HEAD,DELETE"),
        ("POST", "/api/v1/openapi.json", "GET,HEAD"),
    ] {
        let r = send(method, path).await.unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), "method_not_allowed", "{method} {path}");
    }
    // No endpoint at all: 404 for every method, never a 405 that claims another one works.
    for (method, path) in [
        ("DELETE", "/api/x"),
        ("PUT", "/api"),
        ("PATCH", "/api/v2/links"),
    ] {
        let r = send(method, path).await.unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        assert!(!r.headers().contains_key("allow"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), "unknown_endpoint", "{method} {path}");
    }
    // Pages answer theirs as a page.
    let r = send("PUT", "/").await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET,HEAD,POST");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    app.stop().await;
}

#[tokio::test]
async fn international_domains_redirect_in_ascii() {
    let app = TestApp::spawn().await;
    let (status, body) = post_json(&app, json!({ "url": "https://bücher.example/straße" })).await;
    assert_eq!(status, 201);
    assert_eq!(body["url"], "https://xn--bcher-kva.example/stra%C3%9Fe");
    let r = app
        .get(&format!("/{}", body["code"].as_str().unwrap()))
        .await;
    assert_eq!(
        r.headers()["location"],
        "https://xn--bcher-kva.example/stra%C3%9Fe"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_operation() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let links = &doc["paths"]["/api/v1/links"];
    let link = &doc["paths"]["/api/v1/links/{code}"];
    for operation in [&links["post"], &links["get"], &link["get"], &link["delete"]] {
        assert!(operation.is_object(), "missing operation in {doc:#}");
    }
    // Management needs a key; creating may be done without one.
    assert_eq!(link["delete"]["security"], json!([{ "api_key": [] }]));
    let reason = &link["delete"]["parameters"][1];
    assert_eq!(reason["name"], "reason");
    assert_eq!(reason["in"], "query");
    assert_eq!(reason["schema"]["maxLength"], 500);
    assert!(link["delete"]["responses"]["400"].is_object());
    assert!(link["get"]["responses"]["429"].is_object());
    assert_eq!(links["post"]["security"], json!([{}, { "api_key": [] }]));
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    // Error bodies are documented with the shape the handlers send.
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], json!(["error"]));
    app.stop().await;
}
