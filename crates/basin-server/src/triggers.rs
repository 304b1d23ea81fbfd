//! Triggered functions over HTTP: `POST /fn/NAME` (or the path an `@basin.http` function
//! declared) calls a function, `/api/v1/functions` and `/api/v1/events` list them and what
//! they were asked to do (and retry it), `POST /api/v1/deploy` deploys them, and `POST
//! /api/v1/webhooks/s3` takes S3 and MinIO event notifications.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basin_catalog::{EventFilter, EventRecord, EventState};
use basin_core::Error;
use basin_service::Role;
use basin_service::triggers::http::{Call, Called, sync_limit};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::ApiError;
use crate::auth::Caller;
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct CallQuery {
    /// `1` (or `true`): answer 202 at once with the event's id.
    #[serde(rename = "async")]
    asynchronous: Option<String>,
}

pub(crate) async fn call_by_name(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<CallQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    call(&state, &format!("/fn/{name}"), query, &headers, &body).await
}

/// Any path no route claims: a function's declared path when POSTed to by a writer, 404
/// otherwise. (Declared paths are only known at run time, so this checks the role itself.)
pub(crate) async fn call_declared(State(state): State<AppState>, request: Request) -> Response {
    if request.method() != Method::POST {
        let e = Error::not_found(format!(
            "no route {} {}",
            request.method(),
            request.uri().path()
        ))
        .with_hint(
            "the API is under /api/v1 (see docs/openapi.json); functions are called with POST",
        );
        return ApiError::from(e).into_response();
    }
    if let Some(refused) = crate::auth::refusal(Role::Writer, &request) {
        return refused;
    }
    let (uri, headers) = (request.uri().clone(), request.headers().clone());
    let query = Query::<CallQuery>::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or(CallQuery { asynchronous: None });
    // As `call_by_name`'s: at most `[server] max_body_size`; a refusal (413 past it) is
    // rewritten into JSON, and counted, by `json_errors`.
    let body = match Bytes::from_request(request, &state).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    match call(&state, uri.path(), query, &headers, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn call(
    state: &AppState,
    path: &str,
    query: CallQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let function = state.lakehouse.triggers().http_function(path).await?;
    let event: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| {
            Error::invalid(format!("the body of POST {path} is not JSON: {e}"))
                .with_hint("send a JSON document (content-type: application/json)")
        })?
    };
    let how = match query.asynchronous.as_deref() {
        Some("1" | "true") => Call::Async,
        _ => Call::Sync,
    };
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let event = match state.dispatcher.answer(&function, event, how, key).await? {
        Called::Settled(event) => *event,
        Called::Queued(id) => {
            let location = [(header::LOCATION, format!("/api/v1/events/{id}"))];
            let body = json!({"event": id, "state": "pending"});
            let event_header = [("basin-event", id)];
            return Ok((StatusCode::ACCEPTED, location, event_header, Json(body)).into_response());
        }
        Called::Unsettled(id) => {
            let limit = sync_limit(&function);
            let body = json!({"error": {
                "message": format!("`{}` did not finish within {}s", function.name, limit.as_secs()),
                "hint": format!("GET /api/v1/events/{id} for its outcome later, or call with ?async=1"),
                "kind": "Timeout",
            }, "event": id});
            let event_header = [("basin-event", id)];
            return Ok((StatusCode::GATEWAY_TIMEOUT, event_header, Json(body)).into_response());
        }
    };
    let id = event.id.clone();
    let event_header = [("basin-event", id.clone())];
    if event.state == EventState::Succeeded {
        let body = match (&event.result, &event.commit) {
            (Some(result), _) => result.clone(),
            (None, Some(commit)) => json!({"event": id, "commit": commit}),
            (None, None) => Value::Null,
        };
        return Ok((StatusCode::OK, event_header, Json(body)).into_response());
    }
    Ok((
        StatusCode::INTERNAL_SERVER_ERROR,
        event_header,
        Json(failed(&event)),
    )
        .into_response())
}

/// A failed call's answer: the function's error and hint, and what it printed.
fn failed(event: &EventRecord) -> Value {
    let error = event.error.as_deref().unwrap_or("the function failed");
    let (message, hint) = basin_core::split_hint(error);
    json!({"error": {"message": message, "hint": hint, "kind": "FunctionError"},
           "event": event.id, "logs": event.logs})
}

/// One event, by id or a unique prefix: state, attempts, error, logs, result or commit.
pub(crate) async fn event(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<EventRecord>, ApiError> {
    let mut events = vec![state.lakehouse.queue().event(&id).await?];
    for_caller(&state, &caller, &mut events).await?;
    Ok(Json(events.remove(0)))
}

/// What of `events` a caller may see. A call's body (the payload) and its result are the
/// caller's and the function's: a reader sees them only when the function stores its output
/// in a table (`to=`), which a reader may read; for any other function they are left out
/// (`redacted`). The state, error and logs stay (a reader follows failures; a function's
/// logs are what its author chose to print). Writers and admins see everything.
async fn for_caller(
    state: &AppState,
    caller: &Caller,
    events: &mut [EventRecord],
) -> Result<(), ApiError> {
    if caller.role != Some(Role::Reader) || events.is_empty() {
        return Ok(());
    }
    let with_table: std::collections::BTreeSet<String> = state
        .lakehouse
        .deployed()
        .list()
        .await?
        .into_iter()
        .filter(|f| f.declaration.to.is_some())
        .map(|f| f.name)
        .collect();
    for event in events
        .iter_mut()
        .filter(|e| !with_table.contains(&e.function))
    {
        event.payload = json!({
            "redacted": "a call's body is its caller's and the function's: a writer or an admin sees it"
        });
        event.result = None;
    }
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct DeployRequest {
    files: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    plan: bool,
}

/// Deploys the files of a folder as the caller (`basin --remote URL deploy DIR`). On a task
/// of its own, with the caller acting: a client that stops waiting (or the request timeout)
/// does not stop a deploy halfway. It holds one of its writer's turns until it ends
/// (`crate::turns`): a deploy may build environments.
pub(crate) async fn deploy(
    State(state): State<AppState>,
    Json(request): Json<DeployRequest>,
) -> Result<Response, ApiError> {
    let turn = state.run_turn().await?;
    let actor = basin_catalog::actor::current().unwrap_or_else(basin_catalog::actor::Actor::local);
    let lakehouse = state.lakehouse.clone();
    let work = basin_catalog::actor::scope(actor, async move {
        let _turn = turn;
        lakehouse
            .triggers()
            .deploy_files(&request.files, !request.plan)
            .await
    });
    let plan = tokio::spawn(work)
        .await
        .map_err(|e| Error::internal(format!("the deploy stopped: {e}")))??;
    Ok(Json(plan).into_response())
}

/// Deployed functions: trigger, target, version, code, who deployed each and event counts
/// (the grants each acts with only for an admin).
pub(crate) async fn functions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let statuses = state.lakehouse.triggers().function_statuses().await?;
    let mut listed = serde_json::to_value(statuses)
        .map_err(|e| Error::internal(format!("a function's status: {e}")))?;
    if caller.role != Some(Role::Admin) {
        for function in listed.as_array_mut().into_iter().flatten() {
            if let Some(by) = function
                .get_mut("deployed_by")
                .and_then(Value::as_object_mut)
            {
                by.remove("grants");
            }
        }
    }
    Ok(Json(listed).into_response())
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    state: Option<String>,
    function: Option<String>,
    limit: Option<usize>,
}

/// Events, newest first: as `basin events ls` (for a reader, without the bodies, results and
/// logs of functions that store no table: [`for_caller`]).
pub(crate) async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let filter = EventFilter {
        state: q.state.as_deref().map(EventState::from_user).transpose()?,
        function: q.function,
        limit: crate::api::list_limit(q.limit, 50),
    };
    let mut events = state.lakehouse.queue().events(&filter).await?;
    for_caller(&state, &caller, &mut events).await?;
    Ok(Json(events).into_response())
}

/// Queues a failed or dead event again and wakes the dispatcher; answers the event.
pub(crate) async fn retry_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EventRecord>, ApiError> {
    let event = state.lakehouse.queue().event(&id).await?;
    state
        .lakehouse
        .queue()
        .retry_events(Some(&event.id))
        .await?;
    state.dispatcher.wake();
    Ok(Json(state.lakehouse.queue().event(&event.id).await?))
}

/// S3 and MinIO event notifications: queues an event for each created object that lies in a
/// configured bucket and that a deployed function wants.
pub(crate) async fn s3_webhook(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let events = state
        .lakehouse
        .triggers()
        .notification_events(&body)
        .await?;
    let queued = state
        .lakehouse
        .catalog()
        .store()
        .enqueue_events(&events)
        .await?;
    if queued > 0 {
        state.dispatcher.wake();
    }
    Ok(Json(json!({"events": events.len(), "queued": queued})).into_response())
}
