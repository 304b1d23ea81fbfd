//! The HTTP API's handlers: `/healthz`, `/metrics`, and `/api/v1/...` for Basin's operations.
//! Which path and method reach which handler is in [`crate::openapi`].

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basin_catalog::RefKind;
use serde::Deserialize;

use crate::auth::Caller;

pub(crate) mod audit;
pub(crate) mod declared;
mod errors;
mod import;
pub(crate) mod reviews;
pub(crate) mod sign_in;

use crate::state::AppState;
pub(crate) use errors::{ApiError, error_body, error_json};
pub(crate) use import::import;

/// The most items a list (`?limit=`: log, runs, maintenance runs, events) answers at once:
/// a caller's `limit` is cut to it, so one request cannot ask for every row (events carry
/// payloads of up to 2 MiB).
pub(crate) const MAX_LIST_ITEMS: usize = 1000;

/// `?limit=`, or `default`, at most [`MAX_LIST_ITEMS`].
pub(crate) fn list_limit(asked: Option<usize>, default: usize) -> usize {
    asked.unwrap_or(default).min(MAX_LIST_ITEMS)
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub(crate) async fn refs(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut all = state.lakehouse.refs().list(RefKind::Branch).await?;
    all.extend(state.lakehouse.refs().list(RefKind::Tag).await?);
    Ok(Json(all).into_response())
}

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = basin_sql::export::FileFormat::Arrow.media_type();

#[derive(Deserialize)]
pub(crate) struct AtRef {
    #[serde(rename = "ref")]
    at: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn log(
    State(state): State<AppState>,
    Query(q): Query<AtRef>,
) -> Result<Response, ApiError> {
    let entries = state
        .lakehouse
        .refs()
        .log(q.at.as_deref(), list_limit(q.limit, 50))
        .await?;
    Ok(Json(entries).into_response())
}

#[derive(Deserialize)]
pub(crate) struct LineageQuery {
    table: Option<String>,
    #[serde(rename = "ref")]
    at: Option<String>,
    depth: Option<usize>,
    direction: Option<basin_service::Direction>,
}

/// A table's lineage (`basin lineage`).
pub(crate) async fn lineage(
    State(state): State<AppState>,
    Query(q): Query<LineageQuery>,
) -> Result<Response, ApiError> {
    let Some(table) = q.table else {
        return Err(
            basin_core::Error::invalid("which table? `table` is missing")
                .with_hint("e.g. /api/v1/lineage?table=sales.orders&ref=main")
                .into(),
        );
    };
    let graph = state
        .lakehouse
        .lineage()
        .of(
            &table,
            q.at.as_deref(),
            q.depth.unwrap_or(5),
            q.direction.unwrap_or_default(),
        )
        .await?;
    Ok(Json(graph).into_response())
}

#[derive(Deserialize)]
pub(crate) struct GraphQuery {
    limit: Option<usize>,
    #[serde(default)]
    runs: bool,
}

/// Every branch's and tag's commits as a graph (`basin log --graph`).
pub(crate) async fn graph(
    State(state): State<AppState>,
    Query(q): Query<GraphQuery>,
) -> Result<Response, ApiError> {
    let entries = state
        .lakehouse
        .refs()
        .graph(list_limit(q.limit, 200), q.runs)
        .await?;
    Ok(Json(entries).into_response())
}

#[derive(Deserialize)]
pub(crate) struct TablesQuery {
    #[serde(rename = "ref")]
    at: Option<String>,
    /// Add each table's columns.
    #[serde(default)]
    columns: bool,
}

pub(crate) async fn tables(
    State(state): State<AppState>,
    Query(q): Query<TablesQuery>,
) -> Result<Response, ApiError> {
    let at = q.at.as_deref();
    let tables = if q.columns {
        state.lakehouse.tables().list_with_columns(at).await?
    } else {
        state.lakehouse.tables().list(at).await?
    };
    Ok(Json(tables).into_response())
}

#[derive(Deserialize)]
pub(crate) struct DiffQuery {
    from: String,
    to: String,
}

/// What changed between two refs, per table: as `basin diff FROM TO --format json`.
pub(crate) async fn diff(
    State(state): State<AppState>,
    Query(q): Query<DiffQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.lakehouse.refs().diff_tables(&q.from, &q.to).await?).into_response())
}

/// The caller's role and token name (`null` with `--no-auth`), for the console.
pub(crate) async fn whoami(Extension(caller): Extension<Caller>) -> Response {
    Json(serde_json::json!({
        "role": caller.role.map(basin_service::Role::as_str),
        "token": caller.token,
    }))
    .into_response()
}

/// Drops a table from a branch in one commit.
pub(crate) async fn drop_table(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<OnBranch>,
) -> Result<Response, ApiError> {
    let branch = q.branch.as_deref().unwrap_or(basin_catalog::MAIN);
    let commit = state.lakehouse.tables().drop(&name, Some(branch)).await?;
    Ok(Json(commit).into_response())
}

/// One table: columns, partitioning, snapshots, files, rows.
pub(crate) async fn table(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<AtRef>,
) -> Result<Response, ApiError> {
    Ok(Json(
        state
            .lakehouse
            .tables()
            .show(&name, q.at.as_deref())
            .await?,
    )
    .into_response())
}

pub(crate) async fn runs(
    State(state): State<AppState>,
    Query(q): Query<AtRef>,
) -> Result<Response, ApiError> {
    state.settle_runs().await;
    Ok(Json(
        state
            .lakehouse
            .pipelines()
            .list_runs(list_limit(q.limit, 20))
            .await?,
    )
    .into_response())
}

pub(crate) async fn maintenance(
    State(state): State<AppState>,
    Query(q): Query<AtRef>,
) -> Result<Response, ApiError> {
    Ok(Json(
        state
            .lakehouse
            .maintenance()
            .runs(list_limit(q.limit, 20))
            .await?,
    )
    .into_response())
}

/// Runs a project sent in the request as the caller (`basin --remote URL run DIR`), on a task
/// of its own with the caller acting: a client that stops waiting does not stop the run,
/// which `GET /api/v1/runs` then shows. The run holds one of its writer's turns
/// (`crate::turns`) until it ends, so runs left behind by clients that hung up count too.
pub(crate) async fn start_run(
    State(state): State<AppState>,
    Json(run): Json<basin_service::pipeline::RemoteRun>,
) -> Result<Response, ApiError> {
    let turn = state.run_turn().await?;
    let actor = basin_catalog::actor::current();
    let lakehouse = state.lakehouse.clone();
    let work = basin_catalog::actor::carried(actor, async move {
        let _turn = turn;
        lakehouse.pipelines().run_files(run).await
    });
    let record = tokio::spawn(work)
        .await
        .map_err(|e| basin_core::Error::internal(format!("the run stopped: {e}")))??;
    Ok(Json(record).into_response())
}

pub(crate) async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.settle_runs().await;
    Ok(Json(state.lakehouse.pipelines().show_run(&id).await?).into_response())
}

#[derive(Deserialize)]
pub(crate) struct UsageQuery {
    /// Unix milliseconds (default: everything).
    since_ms: Option<i64>,
    /// `function` (default) or `day`.
    #[serde(default)]
    by: basin_service::UsageBy,
}

pub(crate) async fn usage(
    State(state): State<AppState>,
    Query(q): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    let report = state
        .lakehouse
        .usage()
        .report(q.since_ms.unwrap_or(0), q.by)
        .await?;
    Ok(Json(report).into_response())
}

#[derive(Deserialize)]
pub(crate) struct NewBranch {
    name: String,
    from: Option<String>,
}

/// Creates a branch (writers and admins).
pub(crate) async fn create_branch(
    State(state): State<AppState>,
    Json(request): Json<NewBranch>,
) -> Result<Response, ApiError> {
    let created = state
        .lakehouse
        .refs()
        .create_branch(&request.name, request.from.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) async fn delete_branch(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.lakehouse.refs().delete_branch(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(crate) struct NewTag {
    name: String,
    at: Option<String>,
}

pub(crate) async fn create_tag(
    State(state): State<AppState>,
    Json(request): Json<NewTag>,
) -> Result<Response, ApiError> {
    let at = request.at.as_deref().unwrap_or(basin_catalog::MAIN);
    let created = state
        .lakehouse
        .refs()
        .create_tag(&request.name, Some(at))
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) async fn delete_tag(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.lakehouse.refs().delete_tag(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(crate) struct MergeRequest {
    source: String,
    into: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// Merges a ref into a branch in one commit (a conflict is a 409 and changes nothing).
pub(crate) async fn merge(
    State(state): State<AppState>,
    Json(request): Json<MergeRequest>,
) -> Result<Response, ApiError> {
    let into = request.into.as_deref().unwrap_or(basin_catalog::MAIN);
    let report = state
        .lakehouse
        .refs()
        .merge(&request.source, Some(into), request.dry_run)
        .await?;
    Ok(Json(report).into_response())
}

pub(crate) async fn namespaces(
    State(state): State<AppState>,
    Query(q): Query<AtRef>,
) -> Result<Response, ApiError> {
    Ok(Json(state.lakehouse.namespaces().list(q.at.as_deref()).await?).into_response())
}

#[derive(Deserialize)]
pub(crate) struct NewNamespace {
    name: String,
    branch: Option<String>,
    #[serde(default)]
    properties: std::collections::BTreeMap<String, String>,
}

pub(crate) async fn create_namespace(
    State(state): State<AppState>,
    Json(request): Json<NewNamespace>,
) -> Result<Response, ApiError> {
    let branch = request.branch.as_deref().unwrap_or(basin_catalog::MAIN);
    let commit = state
        .lakehouse
        .namespaces()
        .create(&request.name, Some(branch), request.properties)
        .await?;
    Ok((StatusCode::CREATED, Json(commit)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct OnBranch {
    branch: Option<String>,
}

/// Drops an empty namespace from a branch (409 if it still holds tables).
pub(crate) async fn drop_namespace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<OnBranch>,
) -> Result<Response, ApiError> {
    let branch = q.branch.as_deref().unwrap_or(basin_catalog::MAIN);
    let commit = state
        .lakehouse
        .namespaces()
        .drop(&name, Some(branch))
        .await?;
    Ok(Json(commit).into_response())
}

pub(crate) async fn tokens(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.lakehouse.tokens().list().await?).into_response())
}

#[derive(Deserialize)]
pub(crate) struct NewToken {
    name: String,
    role: Option<String>,
    /// `access:TABLES[@BRANCHES]` each (`read:sales.*`); instead of a role.
    #[serde(default)]
    grants: Vec<String>,
}

/// Creates a token (admins); the secret is in this answer only.
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Json(request): Json<NewToken>,
) -> Result<Response, ApiError> {
    let role = request
        .role
        .as_deref()
        .map(basin_service::Role::parse)
        .transpose()?;
    let grants = request
        .grants
        .iter()
        .map(|g| basin_catalog::Grant::parse(g))
        .collect::<basin_core::Result<Vec<_>>>()?;
    let (record, secret) = state
        .lakehouse
        .tokens()
        .create(&request.name, role, &grants)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"token": record, "secret": secret})),
    )
        .into_response())
}

pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.lakehouse.tokens().revoke(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_answers_the_default_or_what_is_asked_up_to_the_cap() {
        assert_eq!(list_limit(None, 50), 50);
        assert_eq!(list_limit(Some(7), 50), 7);
        // `u64::MAX` became `LIMIT -1` in SQLite: every row.
        assert_eq!(list_limit(Some(usize::MAX), 50), MAX_LIST_ITEMS);
    }
}
