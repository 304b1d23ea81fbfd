//! SQL over HTTP (`POST /api/v1/query`, used by the console and `--remote`), streamed: the
//! rows go out as they are computed, never collected whole. JSON answers stop at `[server]
//! json_max_rows` / `json_max_bytes` and say so (`"truncated": true`); Arrow IPC streams
//! have no cap. An error before the first row is an HTTP error; one after it ends a JSON
//! answer with an `error` member, and breaks off an Arrow stream (so no client mistakes a
//! partial answer for a whole one). JSON numbers are exact ([`basin_sql::json`]): decimals
//! as strings with their scale, 64-bit integers past 2^53 as strings.
//!
//! Answers come from the result cache when it holds them (`[sql] result_cache`, see
//! `basin_sql`'s `result_cache`), marked `Basin-Result-Cache: hit`; a request with
//! `Cache-Control: no-cache` (or `no-store`) runs its query and keeps nothing.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use basin_core::Error;
use basin_sql::RecordBatchStream;
use basin_sql::export::{Drain, FileFormat, FileWriter};
use futures::StreamExt;
use serde::Deserialize;

use crate::api::{ARROW_STREAM, ApiError, error_body};
use crate::meter::Meter;
use crate::state::AppState;

/// Says whether the answer came from the result cache (`hit`) or ran (`miss`).
const CACHE_HEADER: header::HeaderName = header::HeaderName::from_static("basin-result-cache");

#[derive(Deserialize)]
pub(crate) struct QueryRequest {
    sql: String,
    #[serde(rename = "ref")]
    at: Option<String>,
    namespace: Option<String>,
    /// `json` (default), or a file: `csv`, `parquet` or `arrow`.
    format: Option<String>,
}

/// Runs SQL on a ref. Answers JSON (`columns`, `rows`, `row_count`, `truncated`, `seconds`),
/// an Arrow IPC stream when the request accepts `application/vnd.apache.arrow.stream`, or a
/// CSV or Parquet file to download when `format` asks for one.
pub(crate) async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<QueryRequest>,
) -> Result<Response, ApiError> {
    let file = match request.format.as_deref() {
        None | Some("json") => None,
        Some(name) => Some(
            FileFormat::parse(name)
                .map_err(|e| e.with_hint("use json (the default), csv, parquet or arrow"))?,
        ),
    };
    let wants_arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(ARROW_STREAM));
    let file = file.or(wants_arrow.then_some(FileFormat::Arrow));
    let cache = !headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| matches!(d.trim(), "no-cache" | "no-store"));
    let meter = Arc::new(Meter::new(
        "http",
        state.lakehouse.clone(),
        state.metrics.clone(),
    ));
    let started = async {
        let lakehouse = &state.lakehouse;
        let limit = lakehouse.sql().limits().query_timeout;
        meter.hold(state.turns.take_within(limit).await?);
        let at = lakehouse.resolve(request.at.as_deref()).await?;
        let session = basin_sql::Session::new(
            lakehouse.sql(),
            lakehouse.iceberg_tables(),
            &at,
            request.namespace.as_deref(),
        )
        .await?
        .with_namespace_option(basin_sql::NamespaceOption::RequestField)
        .with_result_cache(cache)
        .with_kept_columns(true);
        let mut running = session
            .start(&request.sql, session.default_timeout())
            .await?;
        meter.plan(running.plan.clone());
        // The first batch before the answer starts, so that most errors get a status.
        let first = running.batches.next().await.transpose()?;
        Ok::<_, Error>((running.schema, first, running.batches, running.cached))
    }
    .await;
    let (schema, first, batches, cached) = match started {
        Ok(started) => started,
        Err(e) => {
            meter.failed(&e);
            return Err(e.into());
        }
    };
    // Without a first batch the stream has ended, and a stream polled again after its end may
    // panic (the result cache's did, on every empty answer): it is not polled again.
    let batches = match first {
        Some(first) => futures::stream::iter([Ok(first)]).chain(batches).boxed(),
        None => futures::stream::empty().boxed(),
    };
    let cache_header = (CACHE_HEADER, if cached { "hit" } else { "miss" });
    if let Some(format) = file {
        let body = file_body(format, schema, batches, meter)?;
        let mut response = (
            [(header::CONTENT_TYPE, format.media_type()), cache_header],
            body,
        )
            .into_response();
        if format != FileFormat::Arrow {
            let disposition = format!("attachment; filename=\"query.{}\"", format.extension());
            if let Ok(value) = header::HeaderValue::from_str(&disposition) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, value);
            }
        }
        return Ok(response);
    }
    let caps = Caps {
        rows: state.limits.json_max_rows,
        bytes: state.limits.json_max_bytes,
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json"), cache_header],
        json_body(&schema, batches, caps, meter),
    )
        .into_response())
}

/// `batches` as a file in `format`, sent as it is written; an error breaks the stream off
/// (so no client mistakes a partial file for a whole one).
fn file_body(
    format: FileFormat,
    schema: arrow::datatypes::SchemaRef,
    batches: RecordBatchStream,
    meter: Arc<Meter>,
) -> Result<Body, Error> {
    let out = Drain::default();
    let writer = FileWriter::try_new(out.clone(), format, schema)?;
    let stream = futures::stream::unfold(Some((writer, batches)), move |state| {
        let (meter, out) = (meter.clone(), out.clone());
        async move {
            let (mut writer, mut batches) = state?;
            let broken = |e: Error| {
                meter.failed(&e);
                Some((Err(std::io::Error::other(e.message)), None))
            };
            match batches.next().await {
                Some(Ok(batch)) => {
                    meter.rows(batch.num_rows());
                    if let Err(e) = writer.write(&batch) {
                        return broken(e);
                    }
                    Some((Ok(Bytes::from(out.take())), Some((writer, batches))))
                }
                Some(Err(e)) => broken(e),
                None => match writer.finish() {
                    Ok(_) => {
                        meter.ended();
                        Some((Ok(Bytes::from(out.take())), None))
                    }
                    Err(e) => broken(e),
                },
            }
        }
    });
    Ok(Body::from_stream(stream))
}

#[derive(Clone, Copy)]
struct Caps {
    rows: u64,
    bytes: u64,
}

/// Where a JSON answer stands.
struct JsonState {
    batches: RecordBatchStream,
    caps: Caps,
    rows: u64,
    bytes: u64,
    meter: Arc<Meter>,
}

/// `{"columns": [...], "rows": [` then the rows as they come, then the closing members.
fn json_body(
    schema: &arrow::datatypes::SchemaRef,
    batches: RecordBatchStream,
    caps: Caps,
    meter: Arc<Meter>,
) -> Body {
    let columns: Vec<serde_json::Value> = schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let head = format!(
        "{{\"columns\":{},\"rows\":[",
        serde_json::Value::Array(columns)
    );
    let state = JsonState {
        batches,
        caps,
        rows: 0,
        bytes: 0,
        meter,
    };
    let rows = futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            let (chunk, next) = match state.batches.next().await {
                Some(Ok(batch)) => match encode(&batch, &mut state) {
                    Ok((chunk, false)) if chunk.is_empty() => continue,
                    Ok((chunk, false)) => (chunk, Some(state)),
                    Ok((mut chunk, true)) => {
                        state.meter.metrics().limit_hit("json_max_rows_or_bytes");
                        state.meter.ended();
                        chunk.push_str(&tail(&state, true, None));
                        (chunk, None)
                    }
                    Err(e) => {
                        state.meter.failed(&e);
                        (tail(&state, false, Some(&e)), None)
                    }
                },
                Some(Err(e)) => {
                    state.meter.failed(&e);
                    (tail(&state, false, Some(&e)), None)
                }
                None => {
                    state.meter.ended();
                    (tail(&state, false, None), None)
                }
            };
            return Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), next));
        }
    });
    Body::from_stream(futures::stream::iter([Ok(Bytes::from(head))]).chain(rows))
}

/// The rows of `batch` as JSON objects, comma-separated, within the caps; `true` when a cap
/// cut them. Rows are encoded one at a time and the byte cap checked at each, so a chunk
/// never grows past the cap by more than a row.
fn encode(batch: &RecordBatch, state: &mut JsonState) -> Result<(String, bool), Error> {
    let room = state.caps.rows.saturating_sub(state.rows) as usize;
    let mut cut = batch.num_rows() > room;
    let batch = batch.slice(0, batch.num_rows().min(room));
    let mut chunk = Vec::new();
    let mut sent = 0;
    basin_sql::json::each_row(&batch, |row| {
        if state.bytes + row.len() as u64 + 1 > state.caps.bytes {
            cut = true;
            return false;
        }
        if state.rows > 0 {
            chunk.push(b',');
        }
        chunk.extend_from_slice(row);
        state.rows += 1;
        state.bytes += row.len() as u64 + 1;
        sent += 1;
        true
    })
    .map_err(|e| Error::internal(format!("json: {e}")))?;
    state.meter.rows(sent);
    let chunk = String::from_utf8(chunk).map_err(|e| Error::internal(format!("json: {e}")))?;
    Ok((chunk, cut))
}

/// Closes the JSON answer: the row count, whether a cap cut it, the error that ended it.
fn tail(state: &JsonState, truncated: bool, error: Option<&Error>) -> String {
    let mut tail = format!(
        "],\"row_count\":{},\"truncated\":{},\"seconds\":{}",
        state.rows,
        truncated,
        state.meter.elapsed().as_secs_f64()
    );
    if truncated {
        let notice = format!(
            "the answer stops at {} rows or {} of JSON (`[server] json_max_rows`, \
             `json_max_bytes`); for every row, ask for a file (\"format\": \"csv\" or \
             \"parquet\"; the console's download buttons), an Arrow stream (Accept: \
             {ARROW_STREAM}, or `basin --remote ... query`), or add a LIMIT",
            state.caps.rows,
            basin_core::units::format_size(state.caps.bytes)
        );
        tail.push_str(&format!(
            ",\"notice\":{}",
            serde_json::Value::String(notice)
        ));
    }
    if let Some(e) = error {
        tail.push_str(&format!(",{}", &error_body(e).to_string()[1..]));
    } else {
        tail.push('}');
    }
    tail
}
