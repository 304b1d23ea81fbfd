//! The HTTP API's handlers: `/healthz`, `/metrics`, and `/api/v1/...` for Basin's operations.
//! Which path and method reach which handler is in [`crate::openapi`].

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basin_catalog::RefKind;
use basin_core::{Error, ErrorKind};
use serde::Deserialize;

use crate::auth::Caller;
use crate::errors::for_caller;
use crate::state::AppState;

/// The most items a list (`?limit=`: log, runs, maintenance runs, events) answers at once:
/// a caller's `limit` is cut to it, so one request cannot ask for every row (events carry
/// payloads of up to 2 MiB).
pub(crate) const MAX_LIST_ITEMS: usize = 1000;

/// `?limit=`, or `default`, at most [`MAX_LIST_ITEMS`].
pub(crate) fn list_limit(asked: Option<usize>, default: usize) -> usize {
    asked.unwrap_or(default).min(MAX_LIST_ITEMS)
}

/// A Basin error as an HTTP response: the status from its kind, and
/// `{"error": {"message", "hint", "kind"}}`.
pub(crate) struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// The HTTP status of a Basin error of `kind`.
pub(crate) fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Limit => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Store | ErrorKind::Io | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (status(self.0.kind()), Json(error_body(&self.0))).into_response()
    }
}

/// `{"error": {"message", "hint", "kind"}}`, as [`for_caller`] shows it.
pub(crate) fn error_body(e: &Error) -> serde_json::Value {
    let (message, hint) = for_caller(e);
    error_json(&message, hint.as_deref(), e.kind())
}

/// `{"error": {"message", "hint", "kind"}}`.
pub(crate) fn error_json(message: &str, hint: Option<&str>, kind: ErrorKind) -> serde_json::Value {
    serde_json::json!({"error": {
        "message": message,
        "hint": hint,
        "kind": format!("{kind:?}"),
    }})
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub(crate) async fn refs(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut all = state.lakehouse.list_refs(RefKind::Branch).await?;
    all.extend(state.lakehouse.list_refs(RefKind::Tag).await?);
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
        .log(q.at.as_deref(), list_limit(q.limit, 50))
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
        state.lakehouse.list_tables_with_columns(at).await?
    } else {
        state.lakehouse.list_tables(at).await?
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
    Ok(Json(state.lakehouse.diff_tables(&q.from, &q.to).await?).into_response())
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
    let commit = state.lakehouse.drop_table(&name, Some(branch)).await?;
    Ok(Json(commit).into_response())
}

/// One table: columns, partitioning, snapshots, files, rows.
pub(crate) async fn table(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<AtRef>,
) -> Result<Response, ApiError> {
    Ok(Json(state.lakehouse.show_table(&name, q.at.as_deref()).await?).into_response())
}

pub(crate) async fn runs(
    State(state): State<AppState>,
    Query(q): Query<AtRef>,
) -> Result<Response, ApiError> {
    state.settle_runs().await;
    Ok(Json(state.lakehouse.list_runs(list_limit(q.limit, 20)).await?).into_response())
}

pub(crate) async fn maintenance(
    State(state): State<AppState>,
    Query(q): Query<AtRef>,
) -> Result<Response, ApiError> {
    Ok(Json(
        state
            .lakehouse
            .maintenance_runs(list_limit(q.limit, 20))
            .await?,
    )
    .into_response())
}

pub(crate) async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.settle_runs().await;
    Ok(Json(state.lakehouse.show_run(&id).await?).into_response())
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
    let report = state.lakehouse.usage(q.since_ms.unwrap_or(0), q.by).await?;
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
        .create_branch(&request.name, request.from.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) async fn delete_branch(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.lakehouse.delete_branch(&name).await?;
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
    let created = state.lakehouse.create_tag(&request.name, Some(at)).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) async fn delete_tag(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.lakehouse.delete_tag(&name).await?;
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
        .merge(&request.source, Some(into), request.dry_run)
        .await?;
    Ok(Json(report).into_response())
}

pub(crate) async fn namespaces(
    State(state): State<AppState>,
    Query(q): Query<AtRef>,
) -> Result<Response, ApiError> {
    Ok(Json(state.lakehouse.list_namespaces(q.at.as_deref()).await?).into_response())
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
        .create_namespace(&request.name, Some(branch), request.properties)
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
    let commit = state.lakehouse.drop_namespace(&name, Some(branch)).await?;
    Ok(Json(commit).into_response())
}

#[derive(Deserialize)]
pub(crate) struct Upload {
    /// The uploaded file's name; its suffix gives the format unless `format` does.
    filename: String,
    format: Option<String>,
    branch: Option<String>,
    /// `append` (default) or `replace`.
    mode: Option<String>,
    /// A new table's partitioning: terms separated by `;`.
    partition_by: Option<String>,
    delimiter: Option<char>,
    quote: Option<char>,
    header: Option<bool>,
    #[serde(default)]
    allow_new_columns: bool,
}

/// Imports the request body (a CSV, JSON, Parquet or Arrow file) into a table, in one
/// commit. The body streams to a file under `.basin/uploads` first, never into memory.
pub(crate) async fn import(
    State(state): State<AppState>,
    Path(table): Path<String>,
    Query(q): Query<Upload>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    let name = std::path::Path::new(&q.filename)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.starts_with('.'))
        .ok_or_else(|| {
            Error::invalid(format!("`{}` is not a file name", q.filename))
                .with_hint("pass the file's name, e.g. ?filename=orders.csv")
        })?
        .to_string();
    let mode = match q.mode.as_deref() {
        None | Some("append") => basin_ingest::Mode::Append,
        Some("replace") => basin_ingest::Mode::Replace,
        Some(other) => {
            return Err(
                Error::invalid(format!("mode `{other}`: use `append` or `replace`")).into(),
            );
        }
    };
    let format = q
        .format
        .as_deref()
        .map(basin_ingest::Format::parse)
        .transpose()?;
    let partition_by = q
        .partition_by
        .iter()
        .flat_map(|p| p.split(';'))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let csv = basin_ingest::CsvOptions::from_chars(q.delimiter, q.quote, q.header.unwrap_or(true))?;
    let limit = state.limits.max_upload_size;
    let too_large = || {
        state.metrics.limit_hit("max_upload_size");
        Error::new(
            ErrorKind::Limit,
            format!(
                "{name} is larger than the server's upload limit of {}",
                basin_core::units::format_size(limit)
            ),
        )
        .with_hint("split the file, import it on the server with `basin import`, or raise `[server] max_upload_size` in basin.toml")
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        drain(body).await;
        return Ok((
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(error_body(&too_large())),
        )
            .into_response());
    }
    // Each upload may fill `max_upload_size` of disk: at most `max_uploads` at once.
    let Ok(_slot) = state.uploads.clone().try_acquire_owned() else {
        state.metrics.limit_hit("max_uploads");
        drain(body).await;
        let busy = Error::new(
            ErrorKind::Limit,
            format!(
                "the server is receiving {} uploads already (`[server] max_uploads`)",
                state.limits.max_uploads
            ),
        )
        .with_hint("send it again in a few seconds, or raise the setting");
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(error_body(&busy)),
        )
            .into_response());
    };
    // Removed when this request ends, however it ends; a server that died mid-upload
    // leaves it for the next start-up to remove.
    let folder = crate::http::UploadFolder(
        crate::http::uploads_dir(&state.lakehouse).join(basin_core::ids::ordered()),
    );
    let io = |e: std::io::Error| Error::io(format!("cannot store the upload: {e}"));
    tokio::fs::create_dir_all(folder.path()).await.map_err(io)?;
    let path = folder.path().join(&name);
    let mut received = 0u64;
    {
        let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|e| Error::io(format!("the upload of {name} broke off: {e}")))?;
            received += chunk.len() as u64;
            if received > limit {
                return Ok((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Json(error_body(&too_large())),
                )
                    .into_response());
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
    }
    let mut request = basin_ingest::ImportRequest::new(
        vec![path.display().to_string()],
        table,
        q.branch.unwrap_or_else(|| basin_catalog::MAIN.to_string()),
    );
    request.mode = mode;
    request.format = format;
    request.partition_by = partition_by;
    request.allow_new_columns = q.allow_new_columns;
    request.csv = csv;
    let stored = state.lakehouse.import(request, None).await;
    drop(folder);
    // Errors name the file as the client sent it, not where it was kept.
    let report = stored.map_err(|e| {
        let mut named = Error::new(
            e.kind(),
            e.message.replace(&path.display().to_string(), &name),
        );
        named.hint = e.hint;
        named
    })?;
    Ok(Json(report).into_response())
}

/// Reads and drops what a client is already sending before it is refused, so that it reads
/// the refusal instead of a broken pipe (a connection closed with unread data is reset).
/// Bounded in bytes and time: a hostile client cannot keep the server reading.
async fn drain(body: axum::body::Body) {
    const MOST: usize = 16 << 20;
    let mut chunks = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(chunk)) = futures::StreamExt::next(&mut chunks).await {
            read += chunk.len();
            if read > MOST {
                break;
            }
        }
    })
    .await;
}

pub(crate) async fn tokens(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.lakehouse.list_tokens().await?).into_response())
}

#[derive(Deserialize)]
pub(crate) struct NewToken {
    name: String,
    role: String,
}

/// Creates a token (admins); the secret is in this answer only.
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Json(request): Json<NewToken>,
) -> Result<Response, ApiError> {
    let role = basin_service::Role::parse(&request.role)?;
    let (record, secret) = state.lakehouse.create_token(&request.name, role).await?;
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
    state.lakehouse.revoke_token(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_answers_its_status() {
        let table = [
            (ErrorKind::NotFound, 404),
            (ErrorKind::AlreadyExists, 409),
            (ErrorKind::Conflict, 409),
            (ErrorKind::InvalidInput, 400),
            (ErrorKind::Timeout, 504),
            (ErrorKind::Limit, 422),
            (ErrorKind::Store, 500),
            (ErrorKind::Io, 500),
            (ErrorKind::Internal, 500),
        ];
        for (kind, code) in table {
            assert_eq!(status(kind).as_u16(), code, "{kind:?}");
        }
    }

    #[test]
    fn a_list_answers_the_default_or_what_is_asked_up_to_the_cap() {
        assert_eq!(list_limit(None, 50), 50);
        assert_eq!(list_limit(Some(7), 50), 7);
        // `u64::MAX` became `LIMIT -1` in SQLite: every row.
        assert_eq!(list_limit(Some(usize::MAX), 50), MAX_LIST_ITEMS);
    }
}
