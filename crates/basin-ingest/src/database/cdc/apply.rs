//! One source table's decoded changes applied to its Basin tables: the current state
//! rewritten copy-on-write, the changelog appended; both staged for the batch's one commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use basin_catalog::{Content, Key, Resolved};
use basin_core::{Error, Result};
use basin_table::{Staged, StagedChange, TableChange, TableWriter, Tables};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use iceberg::table::Table;

use super::files;

/// The changelog's first columns: the operation, the source's position of the change (its
/// name says whose: `_lsn` for Postgres, `_binlog_pos` for MySQL) and its commit time.
pub(crate) struct Log {
    pub position_column: &'static str,
    pub ops: Vec<&'static str>,
    pub positions: Vec<i64>,
    /// Microseconds since the Unix epoch.
    pub commit_us: Vec<i64>,
}

/// One source table's changes in a batch, decoded: each change's row image (the new row;
/// the old one for a delete) as the table's schema, the keys touched, and the latest
/// version of each key (by its Arrow row: the index of its image, `None` when deleted).
pub(crate) struct Decoded {
    pub images: RecordBatch,
    pub keys: KeyRows,
    pub latest: HashMap<Vec<u8>, Option<usize>>,
    /// The table was truncated in the batch, which forgets what came before.
    pub truncated: bool,
    pub log: Log,
}

/// The table at `at`, staged with the columns of `wanted` it lacks (columns added at the
/// source); a changelog (`changelog` names its position column) is created when missing.
pub(crate) async fn stage_table(
    tables: &Tables,
    at: &Resolved,
    key: &Key,
    wanted: &[(String, Type)],
    changelog: Option<&str>,
) -> Result<Staged> {
    match tables.catalog().content(at, key).await? {
        Some(Content::Table { metadata_location }) => {
            let table = tables.load_from(key, &metadata_location).await?;
            let have: HashSet<String> = column_names(&table).into_iter().collect();
            let added: Vec<(String, Type)> = wanted
                .iter()
                .filter(|(name, _)| !have.contains(name))
                .cloned()
                .collect();
            tables
                .stage_add_columns(Tables::stage_existing(table), added)
                .await
        }
        Some(Content::Namespace { .. }) => Err(Error::invalid(format!(
            "`{key}` is a namespace, not a table"
        ))),
        None if changelog.is_some() => {
            let position = changelog.unwrap_or_default();
            let mut fields = vec![
                NestedField::optional(1, "_op", Type::Primitive(PrimitiveType::String)),
                NestedField::optional(2, position, Type::Primitive(PrimitiveType::Long)),
                NestedField::optional(3, "_commit_ts", Type::Primitive(PrimitiveType::Timestamptz)),
            ];
            let n = wanted.len() as i32 + 3;
            for (i, (name, data_type)) in wanted.iter().enumerate() {
                let id = i as i32 + 4;
                fields.push(NestedField::optional(id, name, renumber(data_type, n + id)));
            }
            let schema = Schema::builder()
                .with_fields(fields.into_iter().map(Arc::new))
                .build()
                .map_err(basin_table::from_iceberg(format!(
                    "cannot make a schema for `{key}`"
                )))?;
            tables
                .stage_create(
                    key,
                    schema,
                    iceberg::spec::UnboundPartitionSpec::builder().build(),
                    Default::default(),
                )
                .await
        }
        None => Err(
            Error::not_found(format!("table `{key}` is not on `{}` any more", at.spec))
                .with_hint("run a full load again: `basin ingest SOURCE --full`"),
        ),
    }
}

/// A list's element gets `element_id` (a new schema's ids must be unique).
fn renumber(data_type: &Type, element_id: i32) -> Type {
    match data_type {
        Type::List(list) => Type::List(iceberg::spec::ListType::new(Arc::new(
            NestedField::list_element(
                element_id,
                list.element_field.field_type.as_ref().clone(),
                list.element_field.required,
            ),
        ))),
        other => other.clone(),
    }
}

pub(crate) fn arrow_schema(table: &Table) -> Result<SchemaRef> {
    Ok(Arc::new(
        iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
            .map_err(basin_table::from_iceberg("table schema"))?,
    ))
}

/// The names of `table`'s columns, in order.
pub(crate) fn column_names(table: &Table) -> Vec<String> {
    let schema = table.metadata().current_schema();
    schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect()
}

/// The places of `key_columns` among the table's `columns`; `Err` names one it lacks.
pub(crate) fn key_indices(
    columns: &[String],
    key_columns: &[String],
) -> std::result::Result<Vec<usize>, String> {
    key_columns
        .iter()
        .map(|k| {
            columns
                .iter()
                .position(|c| c == k)
                .ok_or_else(|| format!("key column {k} is not in the Basin table"))
        })
        .collect()
}

/// The keys a batch touched, as the table's key columns, comparable as Arrow rows.
pub(crate) struct KeyRows {
    /// The key columns' positions in the table.
    pub indices: Vec<usize>,
    pub batch: RecordBatch,
    pub converter: RowConverter,
    pub rows: HashSet<Vec<u8>>,
}

impl KeyRows {
    /// `batch` holds the key columns (at `indices` in the table) of each touched key.
    pub(crate) fn new(indices: Vec<usize>, batch: RecordBatch, display: &str) -> Result<Self> {
        let converter = key_converter(&batch.schema(), display)?;
        let rows = converter
            .convert_columns(batch.columns())
            .map_err(|e| Error::internal(format!("cannot compare keys of {display}: {e}")))?;
        let rows = rows.iter().map(|r| r.as_ref().to_vec()).collect();
        Ok(Self {
            indices,
            batch,
            converter,
            rows,
        })
    }
}

/// Compares rows of `schema`'s columns as bytes.
pub(crate) fn key_converter(schema: &SchemaRef, display: &str) -> Result<RowConverter> {
    RowConverter::new(
        schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::internal(format!("cannot compare keys of {display}: {e}")))
}

/// Stages one source table's decoded changes: its current state rewritten (`current`, staged
/// with the source's columns) and its changelog appended (created with `wanted`'s columns
/// when missing); and how many data files were rewritten.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_table(
    tables: &Tables,
    at: &Resolved,
    (current_key, changelog_key): (&Key, &Key),
    current: Staged,
    wanted: &[(String, Type)],
    key_columns: &[String],
    decoded: Decoded,
    display: &str,
) -> Result<(StagedChange, StagedChange, usize)> {
    let schema = arrow_schema(&current.table)?;
    let columns = column_names(&current.table);
    let mut writer = TableWriter::new(&current.table).await?;
    let removed = rewrite_touched_files(
        &current.table,
        &schema,
        key_columns,
        &decoded.keys,
        decoded.truncated,
        &mut writer,
        display,
    )
    .await?;
    write_newest(&mut writer, &schema, &decoded.images, &decoded.latest).await?;
    let added = writer.close().await?;
    let rewritten = removed.len();
    let current_change = StagedChange {
        key: current_key.clone(),
        staged: current,
        change: TableChange::Rewrite { removed, added },
    };
    let changelog = stage_table(
        tables,
        at,
        changelog_key,
        wanted,
        Some(decoded.log.position_column),
    )
    .await?;
    let changelog_change = changelog_change(
        changelog_key,
        display,
        changelog,
        &decoded.log,
        &columns,
        &decoded.images,
    )
    .await?;
    Ok((current_change, changelog_change, rewritten))
}

/// Reads the data files that may hold a touched key and writes their other rows back
/// through `writer`; returns the files to remove (every one after a truncate).
async fn rewrite_touched_files(
    table: &Table,
    schema: &SchemaRef,
    key_columns: &[String],
    keys: &KeyRows,
    truncated: bool,
    writer: &mut TableWriter,
    display: &str,
) -> Result<HashSet<String>> {
    let mut removed = HashSet::new();
    let candidates = files::candidate_files(
        table,
        key_columns,
        &keys.batch,
        truncated || keys.rows.is_empty(),
    )
    .await?;
    for task in candidates {
        let path = task.data_file_path.clone();
        if truncated {
            removed.insert(path);
            continue;
        }
        let mut kept = Vec::new();
        let mut dropped = 0usize;
        for batch in files::read_file(table, task).await? {
            let batch = files::cast_to(schema, batch)?;
            let columns: Vec<ArrayRef> = keys
                .indices
                .iter()
                .map(|&i| batch.column(i).clone())
                .collect();
            let rows = keys
                .converter
                .convert_columns(&columns)
                .map_err(|e| Error::internal(format!("cannot compare keys of {display}: {e}")))?;
            let keep: arrow::array::BooleanArray = rows
                .iter()
                .map(|r| Some(!keys.rows.contains(r.as_ref())))
                .collect();
            dropped += keep.false_count();
            kept.push(
                arrow::compute::filter_record_batch(&batch, &keep)
                    .map_err(|e| Error::internal(e.to_string()))?,
            );
        }
        if dropped > 0 {
            removed.insert(path);
            for batch in kept {
                if batch.num_rows() > 0 {
                    writer.write(batch).await?;
                }
            }
        }
    }
    Ok(removed)
}

/// Writes the latest version of each touched key that still exists, in change order.
async fn write_newest(
    writer: &mut TableWriter,
    schema: &SchemaRef,
    images: &RecordBatch,
    latest: &HashMap<Vec<u8>, Option<usize>>,
) -> Result<()> {
    let mut newest: Vec<u32> = latest
        .values()
        .filter_map(|v| v.map(|i| i as u32))
        .collect();
    newest.sort_unstable();
    if newest.is_empty() {
        return Ok(());
    }
    let indices = UInt32Array::from(newest);
    let columns = images
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(e.to_string()))?;
    writer
        .write(
            RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| Error::internal(e.to_string()))?,
        )
        .await
}

/// The changelog's append: every change, in order, with `_op`, its position and
/// `_commit_ts` before the row image (null in the columns the image lacks).
async fn changelog_change(
    key: &Key,
    display: &str,
    changelog: Staged,
    log: &Log,
    columns: &[String],
    images: &RecordBatch,
) -> Result<StagedChange> {
    let log_schema = arrow_schema(&changelog.table)?;
    let rows = log.ops.len();
    let ops: StringArray = log.ops.iter().map(|op| Some(*op)).collect();
    let positions = Int64Array::from(log.positions.clone());
    let times = TimestampMicrosecondArray::from(log.commit_us.clone()).with_timezone("+00:00");
    let mut log_columns: Vec<ArrayRef> = vec![Arc::new(ops), Arc::new(positions), Arc::new(times)];
    for field in log_schema.fields().iter().skip(3) {
        let column = match columns.iter().position(|c| c == field.name()) {
            Some(i) => images.column(i).clone(),
            None => arrow::array::new_null_array(field.data_type(), rows),
        };
        log_columns.push(column);
    }
    let log_batch = files::cast_to(
        &log_schema,
        RecordBatch::try_new_with_options(
            Arc::new(arrow::datatypes::Schema::new(
                log_columns
                    .iter()
                    .zip(log_schema.fields())
                    .map(|(c, f)| {
                        arrow::datatypes::Field::new(f.name(), c.data_type().clone(), true)
                    })
                    .collect::<Vec<_>>(),
            )),
            log_columns,
            &Default::default(),
        )
        .map_err(|e| Error::internal(format!("the changelog of {display}: {e}")))?,
    )?;
    let mut writer = TableWriter::new(&changelog.table).await?;
    writer.write(log_batch).await?;
    Ok(StagedChange {
        key: key.clone(),
        staged: changelog,
        change: TableChange::Append(writer.close().await?),
    })
}
