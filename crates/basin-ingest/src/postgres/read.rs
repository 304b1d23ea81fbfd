//! Reads one table with parallel binary COPYs over ctid ranges, each on its own connection
//! in the shared snapshot, and writes the decoded batches into the table's data files.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use basin_core::{Error, Result};
use basin_table::TableWriter;
use futures::StreamExt;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use sqlx::postgres::PgConnection;
use tokio::task::JoinSet;

use super::connect::{PgTable, query_error, quote_ident};
use super::copy_decode::CopyDecoder;
use super::types::Decode;
use crate::database::report::{LoadEvent, LoadProgress};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 32 * 1024;
/// Fewer pages than this per reader are read in one stream: splitting costs more than it saves.
const MIN_BLOCKS_PER_READER: i64 = 64;

/// What reading one table produced.
pub(crate) struct TableRead {
    pub files: Vec<DataFile>,
    pub rows: u64,
    /// Bytes of binary COPY data received.
    pub bytes: u64,
    pub seconds: f64,
}

/// One table to read: its columns in the Basin table's order, and how each is decoded.
pub(crate) struct ReadPlan<'a> {
    pub source: &'a str,
    pub table: &'a PgTable,
    pub columns: Vec<String>,
    pub kinds: Vec<Decode>,
    /// The Arrow schema the Basin table's writer takes (field ids included).
    pub schema: SchemaRef,
    /// `namespace.table`, for progress.
    pub key: String,
}

/// `[lo, hi)` page ranges, the last one open so pages added since the size was read count
/// (none of their rows are in the snapshot, but the range must not depend on that).
fn ctid_ranges(blocks: i64, readers: usize) -> Vec<(i64, Option<i64>)> {
    let parts = (blocks / MIN_BLOCKS_PER_READER).clamp(1, readers.max(1) as i64);
    let step = ((blocks + parts - 1) / parts).max(1);
    (0..parts)
        .map(|i| {
            let hi = (i + 1 < parts).then_some((i + 1) * step);
            (i * step, hi)
        })
        .collect()
}

fn copy_statement(plan: &ReadPlan<'_>, range: Option<(i64, Option<i64>)>) -> String {
    let columns: Vec<String> = plan.columns.iter().map(|c| quote_ident(c)).collect();
    let filter = match range {
        Some((0, None)) | None => String::new(),
        Some((lo, None)) => format!(" WHERE ctid >= '({lo},0)'::tid"),
        Some((lo, Some(hi))) => {
            format!(" WHERE ctid >= '({lo},0)'::tid AND ctid < '({hi},0)'::tid")
        }
    };
    format!(
        "COPY (SELECT {} FROM {}{filter}) TO STDOUT (FORMAT binary)",
        columns.join(", "),
        plan.table.quoted()
    )
}

/// Reads `plan`'s table with up to `readers.len()` connections (given back, for the next
/// table), each writing its own data files of `table` as it decodes, so decoding and Parquet
/// encoding run on as many cores as there are readers. Any error ends the read (the other
/// readers are stopped); the files written are then never committed.
pub(crate) async fn read_table(
    plan: ReadPlan<'_>,
    readers: &mut Vec<PgConnection>,
    table: &Table,
    progress: Option<&LoadProgress>,
) -> Result<TableRead> {
    let started = Instant::now();
    let display = plan.table.display();
    let ranges: Vec<Option<(i64, Option<i64>)>> = if plan.table.heap {
        ctid_ranges(plan.table.blocks, readers.len())
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let total_rows = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for range in ranges {
        let Some(mut conn) = readers.pop() else {
            break;
        };
        let statement = copy_statement(&plan, range);
        let mut decoder = CopyDecoder::new(plan.schema.clone(), plan.kinds.clone(), BATCH_ROWS);
        let context = format!("source `{}`: cannot read {display}", plan.source);
        let columns = plan.columns.clone();
        let display = display.clone();
        let table = table.clone();
        let key = plan.key.clone();
        let progress = progress.cloned();
        let total_rows = total_rows.clone();
        tasks.spawn(async move {
            let result = async {
                let mut writer = TableWriter::new(&table).await?;
                let mut bytes = 0u64;
                let mut stream = conn
                    .copy_out_raw(&statement)
                    .await
                    .map_err(query_error(&context))?;
                let mut batches = Vec::new();
                loop {
                    let chunk = stream.next().await;
                    let last = chunk.is_none();
                    match chunk {
                        Some(chunk) => {
                            let chunk = chunk.map_err(query_error(&context))?;
                            bytes += chunk.len() as u64;
                            decoder
                                .push(&chunk, &mut batches)
                                .map_err(|e| decode_error(&display, &columns, e))?;
                        }
                        None => {
                            batches.extend(
                                decoder
                                    .finish()
                                    .map_err(|e| decode_error(&display, &columns, e))?,
                            );
                        }
                    }
                    for batch in batches.drain(..) {
                        let n = batch.num_rows() as u64;
                        writer.write(batch).await?;
                        let rows = total_rows.fetch_add(n, Ordering::Relaxed) + n;
                        if let Some(progress) = &progress {
                            progress(LoadEvent::Rows { table: &key, rows });
                        }
                    }
                    if last {
                        break;
                    }
                }
                drop(stream);
                Ok::<_, Error>((bytes, writer.close().await?))
            }
            .await;
            (conn, result)
        });
    }
    let mut bytes = 0;
    let mut files = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (conn, result) =
            joined.map_err(|e| Error::internal(format!("a reader of {display} failed: {e}")))?;
        // An error returns at once: dropping `tasks` stops the other readers.
        let (read, written) = result?;
        bytes += read;
        files.extend(written);
        readers.push(conn);
    }
    Ok(TableRead {
        files,
        rows: total_rows.load(Ordering::Relaxed),
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn decode_error(table: &str, columns: &[String], e: super::copy_decode::DecodeError) -> Error {
    match e.column.and_then(|i| columns.get(i)) {
        Some(column) => Error::invalid(format!("{table}.{column}: {}", e.message))
            .with_hint("fix the value at the source, or load a view that casts it"),
        None => Error::io(format!("{table}: {}", e.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::ctid_ranges;

    #[test]
    fn ranges_cover_every_page_and_end_open() {
        assert_eq!(ctid_ranges(10, 2), vec![(0, None)]);
        assert_eq!(ctid_ranges(1000, 2), vec![(0, Some(500)), (500, None)]);
        assert_eq!(
            ctid_ranges(1001, 3),
            vec![(0, Some(334)), (334, Some(668)), (668, None)]
        );
        assert_eq!(ctid_ranges(0, 4), vec![(0, None)]);
    }
}
