//! Bearer tokens: 401 without a known token, 403 when its role does not allow the request.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use basin_service::Role;

use crate::AppState;

/// The role a request needs (`None`: anyone, even without a token). Reading needs a reader;
/// anything that may change the lakehouse needs a writer.
pub(crate) fn required(method: &Method, path: &str) -> Option<Role> {
    let reads = matches!(*method, Method::GET | Method::HEAD)
        || path == "/api/v1/query"
        || (path.starts_with("/v1/") && path.ends_with("/metrics"));
    match path {
        "/healthz" => None,
        _ if path.starts_with("/api/v1/tokens") => Some(Role::Admin),
        _ if crate::console::is_asset(path) => None,
        _ if reads => Some(Role::Reader),
        _ => Some(Role::Writer),
    }
}

fn refuse(status: StatusCode, message: &str, hint: &str) -> Response {
    // Both Basin's error shape (`hint`, `kind`) and the Iceberg REST one (`type`, `code`).
    let kind = if status == StatusCode::FORBIDDEN {
        "ForbiddenException"
    } else {
        "NotAuthorizedException"
    };
    let body = serde_json::json!({"error": {
        "message": message, "hint": hint, "kind": "Unauthorized",
        "type": kind, "code": status.as_u16(),
    }});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

pub(crate) async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(needed) = required(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    if state.open {
        return next.run(request).await;
    }
    let secret = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(secret) = secret else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this server needs an access token",
            "send Authorization: Bearer TOKEN (create one with `basin token create --role reader`)",
        );
    };
    match state.lakehouse.authenticate(secret).await {
        Ok(Some((token, role))) if role >= needed => {
            tracing::debug!(token = %token.id, role = role.as_str(), "authenticated");
            next.run(request).await
        }
        Ok(Some((token, role))) => refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "token {} is a {}; this needs a {}",
                token.id,
                role.as_str(),
                needed.as_str()
            ),
            "use a token with that role (basin token create --role writer)",
        ),
        Ok(None) => refuse(
            StatusCode::UNAUTHORIZED,
            "unknown access token",
            "check the token, or create one with `basin token create`",
        ),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.message,
            "the catalog store failed",
        ),
    }
}
