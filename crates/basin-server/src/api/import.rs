//! `POST /api/v1/tables/{name}/import`: a file in the request body imported into a table in
//! one commit. The body streams to a file under `.basin/uploads` first, never into memory;
//! the steps: read the options, admit the upload (its size, a free upload slot), receive it,
//! import it.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basin_core::{Error, ErrorKind};
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::errors::{ApiError, error_body};
use crate::http::{UploadFolder, as_sent, file_name, uploads_dir};
use crate::state::AppState;

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
/// commit.
pub(crate) async fn import(
    State(state): State<AppState>,
    Path(table): Path<String>,
    Query(q): Query<Upload>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let name = file_name(&q.filename)?;
    let mut request = import_request(q, table)?;
    let limit = state.limits.max_upload_size;
    let too_large = || {
        state.metrics.limit_hit("max_upload_size");
        upload_too_large(&name, limit)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        drain(body).await;
        return Ok(refused(StatusCode::PAYLOAD_TOO_LARGE, &too_large()));
    }
    // Each upload may fill `max_upload_size` of disk: at most `max_uploads` at once.
    let Ok(_slot) = state.uploads.clone().try_acquire_owned() else {
        state.metrics.limit_hit("max_uploads");
        drain(body).await;
        return Ok(busy(uploads_busy(&state)));
    };
    // And one writer, at most `max_uploads_per_writer` of them.
    let Some(_turn) = state.uploads_per_writer.try_take() else {
        drain(body).await;
        let n = state.limits.max_uploads_per_writer;
        let e = Error::new(
            ErrorKind::Limit,
            format!(
                "this token is sending {n} uploads already (`[server] max_uploads_per_writer`)"
            ),
        )
        .with_hint("send it once one of them has landed, or ask the operator to raise the setting");
        return Ok(busy(e));
    };
    // Removed when this request ends, however it ends; a server that died mid-upload
    // leaves it for the next start-up to remove.
    let folder = UploadFolder(uploads_dir(&state.lakehouse).join(basin_core::ids::ordered()));
    let path = folder.path().join(&name);
    if !receive(body, &folder, &path, &name, limit).await? {
        return Ok(refused(StatusCode::PAYLOAD_TOO_LARGE, &too_large()));
    }
    request.sources = vec![path.display().to_string()];
    let stored = state.lakehouse.import(request, None).await;
    drop(folder);
    // Errors name the file as the client sent it, not where it was kept.
    let report = stored.map_err(|e| as_sent(e, &path, &name))?;
    Ok(Json(report).into_response())
}

/// The import the query string asks for, into `table`; its file is set once received.
fn import_request(q: Upload, table: String) -> Result<basin_ingest::ImportRequest, Error> {
    let mode = match q.mode.as_deref() {
        None | Some("append") => basin_ingest::Mode::Append,
        Some("replace") => basin_ingest::Mode::Replace,
        Some(other) => {
            return Err(Error::invalid(format!(
                "mode `{other}`: use `append` or `replace`"
            )));
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
    let mut request = basin_ingest::ImportRequest::new(
        vec![],
        table,
        q.branch.unwrap_or_else(|| basin_catalog::MAIN.to_string()),
    );
    request.mode = mode;
    request.format = format;
    request.partition_by = partition_by;
    request.allow_new_columns = q.allow_new_columns;
    request.csv = csv;
    Ok(request)
}

fn upload_too_large(name: &str, limit: u64) -> Error {
    Error::new(
        ErrorKind::Limit,
        format!(
            "{name} is larger than the server's upload limit of {}",
            basin_core::units::format_size(limit)
        ),
    )
    .with_hint("split the file, import it on the server with `basin import`, or raise `[server] max_upload_size` in basin.toml")
}

/// 503 with `Retry-After: 5`, for an upload turned away by a bound on uploads at once.
fn busy(e: Error) -> Response {
    let mut busy = refused(StatusCode::SERVICE_UNAVAILABLE, &e);
    busy.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    busy
}

fn uploads_busy(state: &AppState) -> Error {
    Error::new(
        ErrorKind::Limit,
        format!(
            "the server is receiving {} uploads already (`[server] max_uploads`)",
            state.limits.max_uploads
        ),
    )
    .with_hint("send it again in a few seconds, or raise the setting")
}

/// A refusal with its own status (not the one the error's kind maps to).
fn refused(status: StatusCode, e: &Error) -> Response {
    (status, Json(error_body(e))).into_response()
}

/// Streams `body` into `path` inside `folder`; `false` once it is over `limit` bytes.
async fn receive(
    body: axum::body::Body,
    folder: &UploadFolder,
    path: &std::path::Path,
    name: &str,
    limit: u64,
) -> Result<bool, Error> {
    let io = |e: std::io::Error| {
        Error::io(format!("cannot store the upload at {}", path.display())).with_source(e)
    };
    tokio::fs::create_dir_all(folder.path()).await.map_err(io)?;
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut chunks = body.into_data_stream();
    let mut received = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|e| Error::io(format!("the upload of {name} broke off")).with_source(e))?;
        received += chunk.len() as u64;
        if received > limit {
            return Ok(false);
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok(true)
}

/// Reads and drops what a client is already sending before it is refused, so that it reads
/// the refusal instead of a broken pipe (a connection closed with unread data is reset).
/// Bounded in bytes and time: a hostile client cannot keep the server reading.
async fn drain(body: axum::body::Body) {
    const MOST: usize = 16 << 20;
    let mut chunks = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(chunk)) = chunks.next().await {
            read += chunk.len();
            if read > MOST {
                break;
            }
        }
    })
    .await;
}
