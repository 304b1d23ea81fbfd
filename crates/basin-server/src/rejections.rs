//! What axum answers by itself (a wrong content type, malformed JSON, a method the route
//! lacks), rewritten into the error body of the door the path belongs to.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::iceberg_rest::errors::{rejection_type, rest_body};
use basin_core::ErrorKind;

use crate::api::error_json;
use crate::http::{BODY_HINT, too_large_body};
use crate::state::AppState;

/// Every error answers with a JSON body. Handlers' errors already do; what axum answers by
/// itself does not (a missing or wrong content type, malformed JSON, a bad query string, a
/// method the route lacks: plain text or nothing). Such an answer is rewritten into
/// `{"error": {"message", "hint", "kind"}}`, or under the Iceberg REST catalog (`/v1/`)
/// into the spec's `{"error": {"message", "type", "code"}}`; its status stays.
pub(crate) async fn json_errors(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let allowed = parts
        .headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The body's own text when it has one, else `default`.
    let or_text = |default: String| {
        if text.is_empty() {
            default
        } else {
            text.clone()
        }
    };
    let (message, hint, kind) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            format!("{method} is not allowed on {path}"),
            Some(match &allowed {
                Some(allowed) => format!("this route takes {allowed} (see docs/openapi.json)"),
                None => "see docs/openapi.json for the routes and their methods".to_string(),
            }),
            ErrorKind::InvalidInput,
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            or_text(format!("{method} {path} needs another content type")),
            Some("send `Content-Type: application/json` with a JSON body".to_string()),
            ErrorKind::InvalidInput,
        ),
        StatusCode::NOT_FOUND => (
            or_text(format!("no route {method} {path}")),
            Some("the API is under /api/v1 (see docs/openapi.json)".to_string()),
            ErrorKind::NotFound,
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            state.metrics.limit_hit("max_body_size");
            (
                too_large_body(state.limits.max_body_size),
                Some(BODY_HINT.to_string()),
                ErrorKind::Limit,
            )
        }
        s if s.is_server_error() => {
            // Never internals: the log has them, under the request's id.
            tracing::error!(status = s.as_u16(), "{text}");
            ("the server failed on this request (a bug); the log has its details under the request id".to_string(), None, ErrorKind::Internal)
        }
        _ => (
            if text.is_empty() {
                format!("{method} {path}: {status}")
            } else {
                text
            },
            Some("see docs/openapi.json for what the route takes".to_string()),
            ErrorKind::InvalidInput,
        ),
    };
    let mut rewritten = if path.starts_with("/v1/") {
        let message = basin_core::inline(&message, hint.as_deref());
        rest_body(status, rejection_type(status), &message)
    } else {
        let body = error_json(&message, hint.as_deref(), kind);
        (status, axum::Json(body)).into_response()
    };
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    if let Some(allowed) = allowed.and_then(|a| HeaderValue::from_str(&a).ok()) {
        rewritten.headers_mut().insert(header::ALLOW, allowed);
    }
    rewritten
}
