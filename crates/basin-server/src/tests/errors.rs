//! Every error answers with a JSON body, in the shape of the door it came through.

use super::*;

#[tokio::test]
async fn every_error_answers_with_a_json_body() {
    let server = server().await;
    let admin = server.secret(Role::Admin);
    let build = |method: Method, path: &str, content_type: Option<&str>, body: &str| {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::AUTHORIZATION, format!("Bearer {admin}"));
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        builder.body(Body::from(body.to_string())).expect("request")
    };
    let json = Some("application/json");
    let cases = [
        // Axum's own rejections: no or another content type, bad JSON, a missing field.
        (
            build(Method::POST, "/api/v1/query", None, r#"{"sql":"SELECT 1"}"#),
            "content type",
        ),
        (
            build(
                Method::POST,
                "/api/v1/query",
                Some("text/plain"),
                "SELECT 1",
            ),
            "content type",
        ),
        (build(Method::POST, "/api/v1/query", json, "{"), "JSON"),
        (
            build(Method::POST, "/api/v1/query", json, r#"{"sq":"SELECT 1"}"#),
            "sql",
        ),
        (
            build(Method::GET, "/api/v1/usage?since_ms=lots", None, ""),
            "since_ms",
        ),
        // A method the route does not have, and no route at all.
        (build(Method::DELETE, "/api/v1/query", None, ""), "DELETE"),
        (build(Method::GET, "/api/v1/nope", None, ""), "/api/v1/nope"),
        (
            build(Method::POST, "/v1/main/namespaces", None, "{}"),
            "content type",
        ),
    ];
    for (request, names) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let response = server.app.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&body);
        assert!(status.is_client_error(), "{what}: {status} {body}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{what}: {body}"
        );
        let answer: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.to_lowercase().contains(&names.to_lowercase()),
            "{what}: {body}"
        );
        if what.contains(" /v1/") {
            // The Iceberg REST catalog's errors keep the spec's shape.
            assert_eq!(answer["error"]["code"], status.as_u16(), "{what}: {body}");
            assert!(answer["error"]["type"].is_string(), "{what}: {body}");
        }
    }
}
