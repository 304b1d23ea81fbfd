//! MCP's streamable HTTP transport on `basin serve`: `POST /mcp` carries one JSON-RPC message
//! (or a batch) and the answer comes back as `application/json`; a notification gets 202.
//! Stateless: no session id, and no stream the server opens (`GET /mcp` is 405), since
//! every tool answers its own request. The route needs a reader's token like the rest of
//! the API, and runs in the request's actor (its grants), which the auth middleware set.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basin_service::Role;
use serde_json::Value;

use super::agent::Agent;
use super::errors::Rpc;
use super::protocol::{VERSIONS, answer_all};
use crate::auth::Caller;
use crate::state::AppState;

pub(crate) async fn post(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(asked) = headers.get("mcp-protocol-version") {
        let known = asked.to_str().is_ok_and(|v| VERSIONS.contains(&v));
        if !known {
            let e = Rpc::invalid_request(&format!(
                "MCP-Protocol-Version {asked:?} is not one Basin speaks ({})",
                VERSIONS.join(", ")
            ));
            return (StatusCode::BAD_REQUEST, Json(e.reply(Value::Null))).into_response();
        }
    }
    let message: Value = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(e) => {
            let e = Rpc::parse(&e);
            return (StatusCode::BAD_REQUEST, Json(e.reply(Value::Null))).into_response();
        }
    };
    let agent = Agent {
        state,
        role: caller.role.unwrap_or(Role::Reader),
        remote: true,
    };
    let reply = match answer_all(&agent, message).await {
        Ok(reply) => reply,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(e.reply(Value::Null))).into_response(),
    };
    match reply {
        Some(reply) => Json(reply).into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// `GET` and `DELETE /mcp`: Basin opens no stream and keeps no session.
pub(crate) async fn not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "POST JSON-RPC messages to /mcp; Basin opens no server stream and keeps no session\n",
    )
        .into_response()
}
