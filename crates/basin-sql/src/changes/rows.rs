//! The rows two sides of a table differ by, from the files they differ by
//! ([`basin_table::feed`]): every row of the earlier side's changed files is held, keyed by
//! its bytes in arrow's row format; each row of the later side's changed files that finds an
//! equal held row cancels it (the row was rewritten, not changed) and is otherwise an insert;
//! the held rows nothing cancelled are deletes. A multiset difference, so duplicate rows count
//! as often as they occur. When the table declares a key (Iceberg's identifier fields), a
//! delete and an insert with the same key are one update: `update_before`, `update_after`.
//!
//! Only the changed files' rows are held, within the query's memory pool: an append holds
//! nothing and streams its inserts.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, new_null_array};
use arrow::compute::{cast, interleave, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use basin_table::feed::FileChanges;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use futures::StreamExt;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;
use tokio::sync::mpsc::Sender;

/// Everything one `table_changes` call reads, resolved when it was planned.
#[derive(Debug)]
pub(crate) struct Sides {
    pub(crate) before: Option<Table>,
    pub(crate) after: Option<Table>,
    pub(crate) files: FileChanges,
    /// The Basin commit that brought each snapshot of the later side (as far as looked).
    pub(crate) commits: HashMap<i64, String>,
    /// The data columns, as the later side has them (the earlier side's when the table is
    /// gone there); every one nullable.
    pub(crate) data: SchemaRef,
    /// The table's key columns (its identifier fields), by position in `data`.
    pub(crate) key: Vec<usize>,
    /// The output: `data`, then `_change`, `_commit`, `_snapshot_id`.
    pub(crate) schema: SchemaRef,
}

/// Computes the changes of `sides` and sends them, a batch at a time, to `tx`.
pub(crate) async fn send(
    sides: Arc<Sides>,
    pool: Arc<dyn MemoryPool>,
    tx: Sender<DfResult<RecordBatch>>,
) -> DfResult<()> {
    let converter = converter(&sides.data, None)?;
    let mut reservation = MemoryConsumer::new("table_changes").register(&pool);
    // The earlier side's rows, held: batches, and each row's positions by its bytes.
    let mut held: Vec<(RecordBatch, Option<i64>)> = Vec::new();
    let mut alive: Vec<Vec<bool>> = Vec::new();
    let mut index: HashMap<Box<[u8]>, Vec<(usize, usize)>> = HashMap::new();
    if let Some(before) = &sides.before {
        for task in &sides.files.removed {
            let snapshot = sides.files.removed_by(task);
            let mut batches = read(before, task)?;
            while let Some(batch) = batches.next().await {
                let batch = conform(&batch.map_err(external)?, &sides.data)?;
                let rows = converter.convert_columns(batch.columns())?;
                reservation.try_grow(batch.get_array_memory_size() + rows.size())?;
                let at = held.len();
                for (i, row) in rows.iter().enumerate() {
                    index.entry(row.as_ref().into()).or_default().push((at, i));
                }
                alive.push(vec![true; batch.num_rows()]);
                held.push((batch, snapshot));
            }
        }
    }
    // The later side's rows: an equal held row cancels one; the rest are inserts, sent now
    // unless a key pairs them with deletes at the end.
    let keyed = !sides.key.is_empty();
    let mut inserts: Vec<(RecordBatch, Option<i64>)> = Vec::new();
    if let Some(after) = &sides.after {
        for task in &sides.files.added {
            let snapshot = sides.files.added_by(task);
            let mut batches = read(after, task)?;
            while let Some(batch) = batches.next().await {
                let batch = conform(&batch.map_err(external)?, &sides.data)?;
                let rows = converter.convert_columns(batch.columns())?;
                let kept: Vec<u32> = (0..batch.num_rows())
                    .filter(|&i| !cancel(&mut index, &mut alive, &rows, i))
                    .map(|i| i as u32)
                    .collect();
                if kept.is_empty() {
                    continue;
                }
                let batch = take_rows(&batch, &kept)?;
                if keyed {
                    reservation.try_grow(batch.get_array_memory_size())?;
                    inserts.push((batch, snapshot));
                } else {
                    let out = tag(&sides, &batch, "insert", snapshot)?;
                    if tx.send(Ok(out)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    drop(index);
    let deletes: Vec<(RecordBatch, Option<i64>)> = held
        .into_iter()
        .zip(alive)
        .filter_map(|((batch, snapshot), alive)| {
            let kept: Vec<u32> = (0..batch.num_rows())
                .filter(|&i| alive[i])
                .map(|i| i as u32)
                .collect();
            (!kept.is_empty()).then(|| take_rows(&batch, &kept).map(|b| (b, snapshot)))
        })
        .collect::<DfResult<_>>()?;
    let out = if keyed {
        pair(&sides, inserts, deletes, &mut reservation)?
    } else {
        deletes
            .iter()
            .map(|(batch, snapshot)| tag(&sides, batch, "delete", *snapshot))
            .collect::<DfResult<Vec<_>>>()?
    };
    for batch in out {
        if tx.send(Ok(batch)).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Whether row `i` of `rows` cancels a held row (marking that one as not deleted).
fn cancel(
    index: &mut HashMap<Box<[u8]>, Vec<(usize, usize)>>,
    alive: &mut [Vec<bool>],
    rows: &Rows,
    i: usize,
) -> bool {
    let Some(positions) = index.get_mut(rows.row(i).as_ref()) else {
        return false;
    };
    match positions.pop() {
        Some((batch, row)) => {
            alive[batch][row] = false;
            true
        }
        None => false,
    }
}

/// Inserts and deletes with the same key become `update_after` and `update_before`, sent
/// side by side; the rest stay inserts and deletes.
fn pair(
    sides: &Sides,
    inserts: Vec<(RecordBatch, Option<i64>)>,
    deletes: Vec<(RecordBatch, Option<i64>)>,
    reservation: &mut MemoryReservation,
) -> DfResult<Vec<RecordBatch>> {
    let key_fields: Vec<usize> = sides.key.clone();
    let keys = converter(&sides.data, Some(&key_fields))?;
    let key_columns = |batch: &RecordBatch| -> Vec<ArrayRef> {
        key_fields
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect()
    };
    let mut deleted: HashMap<Box<[u8]>, Vec<(usize, usize)>> = HashMap::new();
    for (at, (batch, _)) in deletes.iter().enumerate() {
        let rows = keys.convert_columns(&key_columns(batch))?;
        reservation.try_grow(rows.size())?;
        for (i, row) in rows.iter().enumerate() {
            deleted
                .entry(row.as_ref().into())
                .or_default()
                .push((at, i));
        }
    }
    // Every row out, as (which list, batch, row, change, snapshot).
    let mut picks: Vec<(usize, usize, usize, &'static str, Option<i64>)> = Vec::new();
    let mut paired: Vec<Vec<bool>> = deletes
        .iter()
        .map(|(batch, _)| vec![false; batch.num_rows()])
        .collect();
    for (at, (batch, snapshot)) in inserts.iter().enumerate() {
        let rows = keys.convert_columns(&key_columns(batch))?;
        for i in 0..batch.num_rows() {
            match deleted.get_mut(rows.row(i).as_ref()).and_then(Vec::pop) {
                Some((d, r)) => {
                    paired[d][r] = true;
                    picks.push((1, d, r, "update_before", *snapshot));
                    picks.push((0, at, i, "update_after", *snapshot));
                }
                None => picks.push((0, at, i, "insert", *snapshot)),
            }
        }
    }
    for (at, ((_, snapshot), paired)) in deletes.iter().zip(&paired).enumerate() {
        for (i, _) in paired.iter().enumerate().filter(|(_, done)| !**done) {
            picks.push((1, at, i, "delete", *snapshot));
        }
    }
    let all: Vec<&RecordBatch> = inserts
        .iter()
        .chain(deletes.iter())
        .map(|(b, _)| b)
        .collect();
    let offset = inserts.len();
    let mut out = Vec::new();
    for chunk in picks.chunks(8192) {
        let positions: Vec<(usize, usize)> = chunk
            .iter()
            .map(|&(list, b, r, _, _)| (if list == 0 { b } else { offset + b }, r))
            .collect();
        let columns = (0..sides.data.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> = all.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &positions)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let data = RecordBatch::try_new(sides.data.clone(), columns)?;
        let changes: Vec<&str> = chunk.iter().map(|p| p.3).collect();
        let snapshots: Vec<Option<i64>> = chunk.iter().map(|p| p.4).collect();
        out.push(with_columns(sides, &data, &changes, &snapshots)?);
    }
    Ok(out)
}

/// `batch` with the change columns: every row `change`, made in `snapshot`.
fn tag(
    sides: &Sides,
    batch: &RecordBatch,
    change: &'static str,
    snapshot: Option<i64>,
) -> DfResult<RecordBatch> {
    let n = batch.num_rows();
    with_columns(sides, batch, &vec![change; n], &vec![snapshot; n])
}

fn with_columns(
    sides: &Sides,
    batch: &RecordBatch,
    changes: &[&str],
    snapshots: &[Option<i64>],
) -> DfResult<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(StringArray::from(changes.to_vec())));
    columns.push(Arc::new(StringArray::from(
        snapshots
            .iter()
            .map(|s| s.and_then(|id| sides.commits.get(&id).cloned()))
            .collect::<Vec<_>>(),
    )));
    columns.push(Arc::new(Int64Array::from(snapshots.to_vec())));
    Ok(RecordBatch::try_new(sides.schema.clone(), columns)?)
}

/// A row converter over `data`'s columns (all, or those at `only`).
fn converter(data: &SchemaRef, only: Option<&[usize]>) -> DfResult<RowConverter> {
    let fields: Vec<SortField> = data
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| only.is_none_or(|o| o.contains(i)))
        .map(|(_, f)| SortField::new(f.data_type().clone()))
        .collect();
    RowConverter::new(fields).map_err(|e| {
        DataFusionError::NotImplemented(format!(
            "table_changes cannot compare rows of this table: {e}"
        ))
    })
}

/// `batch` with `schema`'s columns, matched by name: a column the batch lacks (added since,
/// or dropped by the other side) is null, one of another type (promoted since) is cast. For
/// rows read under two versions of a table's schema (the change feed, incremental models'
/// merges).
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> arrow::error::Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => Ok(c.clone()),
            Some(c) => cast(c, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<arrow::error::Result<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

fn take_rows(batch: &RecordBatch, rows: &[u32]) -> DfResult<RecordBatch> {
    if rows.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
    let indices = arrow::array::UInt32Array::from(rows.to_vec());
    Ok(take_record_batch(batch, &indices)?)
}

fn read(table: &Table, task: &FileScanTask) -> DfResult<iceberg::scan::ArrowRecordBatchStream> {
    basin_table::feed::read_tasks(table, vec![task.clone()])
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

fn external(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
