//! Applies a batch of source transactions to the Basin tables: the changelog appended, the
//! current state rewritten copy-on-write, every table touched in one catalog commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use basin_catalog::{CommitRequest, Content, Key, Resolved};
use basin_core::{Error, Result};
use basin_table::{StagedChange, TableChange, TableWriter, Tables};
use bytes::Bytes;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use iceberg::table::Table;

use super::Position;
use super::files;
use super::pgoutput::{Relation, Tuple, Value};
use crate::postgres::connect::PgTable;
use crate::postgres::copy_decode::{CopyDecoder, PG_EPOCH_MICROS, SIGNATURE};
use crate::postgres::types::Decode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    fn code(self) -> &'static str {
        match self {
            Op::Insert => "I",
            Op::Update => "U",
            Op::Delete => "D",
            Op::Truncate => "T",
        }
    }
}

/// One row change, with the relation (columns) it was sent under.
pub(crate) struct Change {
    pub op: Op,
    pub relation: Arc<Relation>,
    pub new: Option<Tuple>,
    pub old: Option<Tuple>,
}

/// A committed source transaction's changes to the source's tables.
pub(crate) struct Txn {
    /// The commit's end LSN: the position recorded once it is applied.
    pub end_lsn: u64,
    /// Microseconds since the Unix epoch.
    pub commit_us: i64,
    pub changes: Vec<Change>,
}

/// A source table and where its changes go.
pub(crate) struct Target {
    pub table: PgTable,
    pub current: Key,
    pub changelog: Key,
    /// How each column (by name) decodes, from the source's catalog.
    pub decodes: HashMap<String, Decode>,
}

/// What a batch did.
#[derive(Clone, Debug, Default)]
pub(crate) struct Applied {
    pub commit: Option<String>,
    pub changes: u64,
    pub tables: usize,
    pub files_rewritten: usize,
}

/// Applies `txns` (in commit order) to the tables of `targets` (by relation id) on `branch`,
/// in one catalog commit recording `position`.
pub(crate) async fn apply(
    tables: &Tables,
    source: &str,
    branch: &str,
    author: &str,
    targets: &HashMap<u32, Target>,
    txns: &[Txn],
    position: &Position,
) -> Result<Applied> {
    let at = tables.catalog().resolve(branch).await?;
    let mut by_table: HashMap<u32, Vec<(&Change, u64, i64)>> = HashMap::new();
    let mut order = Vec::new();
    for txn in txns {
        for change in &txn.changes {
            let id = change.relation.id;
            if !targets.contains_key(&id) {
                continue;
            }
            let list = by_table.entry(id).or_default();
            if list.is_empty() {
                order.push(id);
            }
            list.push((change, txn.end_lsn, txn.commit_us));
        }
    }
    let mut applied = Applied::default();
    let mut staged = Vec::new();
    for id in order {
        let target = &targets[&id];
        let changes = &by_table[&id];
        applied.changes += changes.len() as u64;
        let (current, changelog, rewritten) =
            table_changes(tables, &at, source, target, changes).await?;
        applied.files_rewritten += rewritten;
        staged.push(current);
        staged.push(changelog);
    }
    applied.tables = staged.len() / 2;
    let last = txns.last().map(|t| t.commit_us / 1000).unwrap_or_default();
    let message = format!(
        "cdc {source}: {} transaction{}, {} change{} (lsn {})",
        txns.len(),
        if txns.len() == 1 { "" } else { "s" },
        applied.changes,
        if applied.changes == 1 { "" } else { "s" },
        super::slot::format_lsn(position.lsn)
    );
    let request = position
        .record(
            CommitRequest::new(branch, at.commit.clone(), message)
                .with_author(author)
                .with_property(super::SOURCE_PROPERTY, source),
        )
        .with_property(super::COMMIT_TIME_PROPERTY, last.to_string());
    if staged.is_empty() {
        return Ok(applied);
    }
    let commit = tables.commit_changes(staged, request).await?;
    applied.commit = Some(commit.id.to_string());
    Ok(applied)
}

/// The table, staged with the columns the latest relation added at the source.
async fn stage_table(
    tables: &Tables,
    at: &Resolved,
    key: &Key,
    wanted: &[(String, Type)],
    create_changelog: bool,
) -> Result<basin_table::Staged> {
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
        None if create_changelog => {
            let mut fields = vec![
                NestedField::optional(1, "_op", Type::Primitive(PrimitiveType::String)),
                NestedField::optional(2, "_lsn", Type::Primitive(PrimitiveType::Long)),
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

fn arrow_schema(table: &Table) -> Result<SchemaRef> {
    Ok(Arc::new(
        iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
            .map_err(basin_table::from_iceberg("table schema"))?,
    ))
}

/// The raw value of each of `columns` (names) in `tuple` sent under `relation`; `None` for
/// NULL or a column the relation does not have.
fn values(
    relation: &Relation,
    tuple: &Tuple,
    columns: &[String],
) -> std::result::Result<Vec<Option<Bytes>>, String> {
    columns
        .iter()
        .map(|name| {
            let Some(i) = relation.columns.iter().position(|c| &c.name == name) else {
                return Ok(None);
            };
            match tuple.get(i) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Binary(b)) => Ok(Some(b.clone())),
                Some(Value::Unchanged) => Err(format!("column {name}: an unchanged TOASTed value")),
                Some(Value::Text(_)) => Err(format!("column {name}: a value in text format")),
            }
        })
        .collect()
}

/// `tuple` with the TOASTed values an update left unchanged taken from the old row.
fn fill_unchanged(new: &Tuple, old: Option<&Tuple>) -> Tuple {
    new.iter()
        .enumerate()
        .map(|(i, v)| match (v, old.and_then(|o| o.get(i))) {
            (Value::Unchanged, Some(Value::Binary(b))) => Value::Binary(b.clone()),
            _ => v.clone(),
        })
        .collect()
}

fn key_bytes(values: &[Option<Bytes>]) -> Vec<u8> {
    let mut key = Vec::new();
    for v in values {
        match v {
            Some(b) => {
                key.extend((b.len() as i32).to_be_bytes());
                key.extend_from_slice(b);
            }
            None => key.extend((-1i32).to_be_bytes()),
        }
    }
    key
}

/// Decodes rows of raw values (each `kinds` in order) into one batch of `schema`.
fn decode_rows(
    schema: SchemaRef,
    kinds: Vec<Decode>,
    rows: &[Vec<Option<Bytes>>],
) -> Result<RecordBatch> {
    let mut data = SIGNATURE.to_vec();
    data.extend([0u8; 8]);
    for row in rows {
        data.extend((row.len() as i16).to_be_bytes());
        for v in row {
            match v {
                Some(b) => {
                    data.extend((b.len() as i32).to_be_bytes());
                    data.extend_from_slice(b);
                }
                None => data.extend((-1i32).to_be_bytes()),
            }
        }
    }
    data.extend((-1i16).to_be_bytes());
    let mut decoder = CopyDecoder::new(schema.clone(), kinds, rows.len().max(1));
    let mut batches = Vec::new();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let bad = |e: crate::postgres::copy_decode::DecodeError| {
        let column = e
            .column
            .and_then(|i| names.get(i))
            .cloned()
            .unwrap_or_default();
        Error::invalid(format!("column {column}: {}", e.message))
            .with_hint("fix the value at the source")
    };
    decoder.push(&data, &mut batches).map_err(bad)?;
    batches.extend(decoder.finish().map_err(bad)?);
    arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| Error::internal(format!("decoded changes do not form a batch: {e}")))
}

/// The staged changes of one source table's batch: its current state and its changelog;
/// and how many data files were rewritten.
async fn table_changes(
    tables: &Tables,
    at: &Resolved,
    source: &str,
    target: &Target,
    changes: &[(&Change, u64, i64)],
) -> Result<(StagedChange, StagedChange, usize)> {
    let display = target.table.display();
    let fail = |message: String| Error::invalid(format!("source `{source}`: {display}: {message}"));
    let relation = changes
        .last()
        .map(|c| c.0.relation.clone())
        .expect("a change");
    // Columns the source has now, each with its Iceberg type.
    let mut wanted = Vec::new();
    for column in &relation.columns {
        let decode = target
            .decodes
            .get(&column.name)
            .ok_or_else(|| fail(format!("column {} has no known type", column.name)))?;
        wanted.push((column.name.clone(), decode.iceberg_type(0)));
    }
    let current = stage_table(tables, at, &target.current, &wanted, false).await?;
    let columns = column_names(&current.table);
    let kinds = columns
        .iter()
        .map(|c| {
            target.decodes.get(c).copied().ok_or_else(|| {
                fail(format!("the Basin table has a column {c} that the source no longer has"))
                    .with_hint(format!(
                        "Basin does not drop columns on its own: drop `{}` and `{}` and run `basin ingest {source} --full`",
                        target.current, target.changelog
                    ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let key_columns: Vec<String> = relation
        .columns
        .iter()
        .filter(|c| c.key)
        .map(|c| c.name.clone())
        .collect();
    if key_columns.is_empty() {
        return Err(no_key(source, &display));
    }

    // Each change's row image (the new row; the old key or row for a delete), and the
    // latest version of each key the batch touched.
    let mut images: Vec<Vec<Option<Bytes>>> = Vec::with_capacity(changes.len());
    let mut filled: Vec<Tuple> = Vec::with_capacity(changes.len());
    for (change, _, _) in changes {
        filled.push(match (&change.new, change.op) {
            (Some(new), Op::Insert | Op::Update) => fill_unchanged(new, change.old.as_ref()),
            _ => change.old.clone().unwrap_or_default(),
        });
    }
    let mut latest: HashMap<Vec<u8>, Option<usize>> = HashMap::new();
    let mut touched: Vec<Vec<Option<Bytes>>> = Vec::new();
    let mut touched_seen: HashSet<Vec<u8>> = HashSet::new();
    let mut truncated = false;
    let unchanged_hint = || {
        format!(
            "an update left a large (TOASTed) value unchanged, which Postgres does not send: `ALTER TABLE {} REPLICA IDENTITY FULL;` makes it send the old row",
            target.table.sql()
        )
    };
    for (i, ((change, _, _), image)) in changes.iter().zip(&filled).enumerate() {
        let relation = &change.relation;
        if change.op == Op::Truncate {
            images.push(vec![None; columns.len()]);
            latest.clear();
            touched.clear();
            touched_seen.clear();
            truncated = true;
            continue;
        }
        images.push(
            values(relation, image, &columns).map_err(|e| fail(e).with_hint(unchanged_hint()))?,
        );
        let mut touch = |key: Vec<Option<Bytes>>, version: Option<usize>| {
            let raw = key_bytes(&key);
            if touched_seen.insert(raw.clone()) {
                touched.push(key);
            }
            latest.insert(raw, version);
        };
        let key_of = |tuple| {
            values(relation, tuple, &key_columns).map_err(|e| fail(e).with_hint(unchanged_hint()))
        };
        match change.op {
            Op::Insert => touch(key_of(image)?, Some(i)),
            Op::Update => {
                let new_key = key_of(image)?;
                if let Some(old) = &change.old {
                    let old_key = key_of(old)?;
                    if key_bytes(&old_key) != key_bytes(&new_key) {
                        touch(old_key, None);
                    }
                }
                touch(new_key, Some(i));
            }
            Op::Delete => touch(key_of(image)?, None),
            Op::Truncate => {}
        }
    }
    let schema = arrow_schema(&current.table)?;
    let image_batch =
        decode_rows(schema.clone(), kinds.clone(), &images).map_err(|e| fail(e.message.clone()))?;

    // The data files that may hold a touched key, read and written back without those keys.
    let key_indices: Vec<usize> = key_columns
        .iter()
        .map(|k| {
            columns
                .iter()
                .position(|c| c == k)
                .ok_or_else(|| fail(format!("key column {k} is not in the Basin table")))
        })
        .collect::<Result<_>>()?;
    let key_schema = Arc::new(
        schema
            .project(&key_indices)
            .map_err(|e| Error::internal(e.to_string()))?,
    );
    let key_kinds: Vec<Decode> = key_indices.iter().map(|&i| kinds[i]).collect();
    let key_batch = decode_rows(key_schema.clone(), key_kinds, &touched)
        .map_err(|e| fail(e.message.clone()))?;
    let converter = RowConverter::new(
        key_schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::internal(format!("cannot compare keys of {display}: {e}")))?;
    let key_rows = converter
        .convert_columns(key_batch.columns())
        .map_err(|e| Error::internal(format!("cannot compare keys of {display}: {e}")))?;
    let touched_rows: HashSet<Vec<u8>> = key_rows.iter().map(|r| r.as_ref().to_vec()).collect();

    let mut writer = TableWriter::new(&current.table).await?;
    let mut removed = HashSet::new();
    let candidates = files::candidate_files(
        &current.table,
        &key_columns,
        &key_batch,
        truncated || touched_rows.is_empty(),
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
        for batch in files::read_file(&current.table, task).await? {
            let batch = files::cast_to(&schema, batch)?;
            let keys: Vec<ArrayRef> = key_indices
                .iter()
                .map(|&i| batch.column(i).clone())
                .collect();
            let rows = converter
                .convert_columns(&keys)
                .map_err(|e| Error::internal(format!("cannot compare keys of {display}: {e}")))?;
            let keep: arrow::array::BooleanArray = rows
                .iter()
                .map(|r| Some(!touched_rows.contains(r.as_ref())))
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
    let mut newest: Vec<u32> = latest
        .values()
        .filter_map(|v| v.map(|i| i as u32))
        .collect();
    newest.sort_unstable();
    if !newest.is_empty() {
        let indices = UInt32Array::from(newest);
        let columns = image_batch
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
            .await?;
    }
    let added = writer.close().await?;
    let rewritten = removed.len();
    let current_change = StagedChange {
        key: target.current.clone(),
        staged: current,
        change: TableChange::Rewrite { removed, added },
    };

    // The changelog: every change, in order.
    let changelog = stage_table(tables, at, &target.changelog, &wanted, true).await?;
    let log_schema = arrow_schema(&changelog.table)?;
    let ops: StringArray = changes.iter().map(|(c, _, _)| Some(c.op.code())).collect();
    let lsns: Int64Array = changes
        .iter()
        .map(|(_, lsn, _)| Some(*lsn as i64))
        .collect();
    let times =
        TimestampMicrosecondArray::from(changes.iter().map(|(_, _, us)| *us).collect::<Vec<_>>())
            .with_timezone("+00:00");
    let mut log_columns: Vec<ArrayRef> = vec![Arc::new(ops), Arc::new(lsns), Arc::new(times)];
    for field in log_schema.fields().iter().skip(3) {
        let column = match columns.iter().position(|c| c == field.name()) {
            Some(i) => image_batch.column(i).clone(),
            None => arrow::array::new_null_array(field.data_type(), changes.len()),
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
    let changelog_change = StagedChange {
        key: target.changelog.clone(),
        staged: changelog,
        change: TableChange::Append(writer.close().await?),
    };
    Ok((current_change, changelog_change, rewritten))
}

pub(crate) fn no_key(source: &str, table: &str) -> Error {
    Error::invalid(format!(
        "source `{source}`: {table} has no primary key and no replica identity, so its updates and deletes cannot be matched to rows"
    ))
    .with_hint(format!(
        "add a primary key, or `ALTER TABLE {table} REPLICA IDENTITY FULL;` at the source"
    ))
}

/// Microseconds since the Unix epoch of a Postgres timestamp (microseconds since 2000).
pub(crate) fn unix_micros(pg_micros: i64) -> i64 {
    pg_micros.saturating_add(PG_EPOCH_MICROS)
}

/// The names of `table`'s columns, in order.
fn column_names(table: &basin_table::iceberg::table::Table) -> Vec<String> {
    let schema = table.metadata().current_schema();
    schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[u8]) -> Value {
        Value::Binary(Bytes::copy_from_slice(v))
    }

    #[test]
    fn unchanged_toasted_values_come_from_the_old_row_when_it_has_them() {
        let new = vec![b(&[1]), Value::Unchanged, Value::Unchanged];
        let old = vec![b(&[1]), b(b"big"), Value::Null];
        assert_eq!(
            fill_unchanged(&new, Some(&old)),
            vec![b(&[1]), b(b"big"), Value::Unchanged]
        );
        assert_eq!(fill_unchanged(&new, None), new);
    }

    #[test]
    fn keys_tell_null_from_empty_and_values_apart() {
        let empty = Bytes::new();
        let one = Bytes::from_static(&[1]);
        assert_ne!(key_bytes(&[None]), key_bytes(&[Some(empty.clone())]));
        assert_ne!(
            key_bytes(&[Some(one.clone()), Some(empty.clone())]),
            key_bytes(&[Some(empty), Some(one.clone())])
        );
        assert_eq!(key_bytes(&[Some(one.clone())]), key_bytes(&[Some(one)]));
    }
}
