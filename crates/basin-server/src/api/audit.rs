//! `/api/v1/audit` (admins): the audit log, and what the HTTP doors add to it.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    principal: Option<String>,
    since_ms: Option<i64>,
    limit: Option<usize>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let entries = state
        .lakehouse
        .audit()
        .list(q.principal.as_deref(), q.since_ms, q.limit.unwrap_or(100))
        .await?;
    Ok(Json(entries).into_response())
}

/// Whether a request goes in the audit log: one that may change something (not a GET or
/// HEAD, and not a query or a plan: `POST /api/v1/query` and `/api/v1/declared/plan` read),
/// or any refused for who sent it.
pub(crate) fn audited(method: &Method, path: &str, status: StatusCode) -> bool {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return true;
    }
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || path == "/api/v1/query"
        || path == "/api/v1/declared/plan"
        || path.ends_with("/metrics");
    !reads
}
