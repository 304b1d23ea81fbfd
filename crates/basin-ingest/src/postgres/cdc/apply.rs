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

use super::changes::{Change, Op, Target, Txn};
use super::files;
use super::pgoutput::Tuple;
use super::position::{COMMIT_TIME_PROPERTY, Position, SOURCE_PROPERTY};
use super::rows::{decode_rows, fill_unchanged, key_bytes, values};
use super::slot;
use super::targets::no_key;
use crate::postgres::types::Decode;

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
        slot::format_lsn(position.lsn)
    );
    let request = position
        .record(
            CommitRequest::new(branch, at.commit.clone(), message)
                .with_property(SOURCE_PROPERTY, source),
        )
        .with_property(COMMIT_TIME_PROPERTY, last.to_string());
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

fn arrow_schema(table: &Table) -> Result<SchemaRef> {
    Ok(Arc::new(
        iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
            .map_err(basin_table::from_iceberg("table schema"))?,
    ))
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
    let touched = Touched::collect(target, changes, &columns, &key_columns, &fail)?;
    let schema = arrow_schema(&current.table)?;
    let image_batch = decode_rows(schema.clone(), kinds.clone(), &touched.images)
        .map_err(|e| fail(e.message.clone()))?;
    let keys = TouchedKeys::new(
        &schema,
        &columns,
        &key_columns,
        &kinds,
        &touched.keys,
        &display,
        &fail,
    )?;
    let mut writer = TableWriter::new(&current.table).await?;
    let removed = rewrite_touched_files(
        &current.table,
        &schema,
        &key_columns,
        &keys,
        touched.truncated,
        &mut writer,
        &display,
    )
    .await?;
    write_newest(&mut writer, &schema, &image_batch, &touched.latest).await?;
    let added = writer.close().await?;
    let rewritten = removed.len();
    let current_change = StagedChange {
        key: target.current.clone(),
        staged: current,
        change: TableChange::Rewrite { removed, added },
    };
    let changelog = stage_table(tables, at, &target.changelog, &wanted, true).await?;
    let changelog_change =
        changelog_change(target, changelog, changes, &columns, &image_batch).await?;
    Ok((current_change, changelog_change, rewritten))
}

/// What one table's changes in a batch touch: each change's row image (the new row; the
/// old key or row for a delete), the keys touched in the order first touched, the latest
/// version of each (by key bytes: the index of its image, `None` when deleted), and whether
/// the table was truncated (which forgets what came before it).
struct Touched {
    images: Vec<Vec<Option<Bytes>>>,
    keys: Vec<Vec<Option<Bytes>>>,
    latest: HashMap<Vec<u8>, Option<usize>>,
    truncated: bool,
}

impl Touched {
    fn collect(
        target: &Target,
        changes: &[(&Change, u64, i64)],
        columns: &[String],
        key_columns: &[String],
        fail: &dyn Fn(String) -> Error,
    ) -> Result<Self> {
        let mut filled: Vec<Tuple> = Vec::with_capacity(changes.len());
        for (change, _, _) in changes {
            filled.push(match (&change.new, change.op) {
                (Some(new), Op::Insert | Op::Update) => fill_unchanged(new, change.old.as_ref()),
                _ => change.old.clone().unwrap_or_default(),
            });
        }
        let mut images: Vec<Vec<Option<Bytes>>> = Vec::with_capacity(changes.len());
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
                values(relation, image, columns)
                    .map_err(|e| fail(e).with_hint(unchanged_hint()))?,
            );
            let mut touch = |key: Vec<Option<Bytes>>, version: Option<usize>| {
                let raw = key_bytes(&key);
                if touched_seen.insert(raw.clone()) {
                    touched.push(key);
                }
                latest.insert(raw, version);
            };
            let key_of = |tuple| {
                values(relation, tuple, key_columns)
                    .map_err(|e| fail(e).with_hint(unchanged_hint()))
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
        Ok(Self {
            images,
            keys: touched,
            latest,
            truncated,
        })
    }
}

/// The touched keys decoded as the table's key columns, and comparable as Arrow rows.
struct TouchedKeys {
    /// The key columns' positions in the table.
    indices: Vec<usize>,
    batch: RecordBatch,
    converter: RowConverter,
    rows: HashSet<Vec<u8>>,
}

impl TouchedKeys {
    fn new(
        schema: &SchemaRef,
        columns: &[String],
        key_columns: &[String],
        kinds: &[Decode],
        touched: &[Vec<Option<Bytes>>],
        display: &str,
        fail: &dyn Fn(String) -> Error,
    ) -> Result<Self> {
        let indices: Vec<usize> = key_columns
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
                .project(&indices)
                .map_err(|e| Error::internal(e.to_string()))?,
        );
        let key_kinds: Vec<Decode> = indices.iter().map(|&i| kinds[i]).collect();
        let batch = decode_rows(key_schema.clone(), key_kinds, touched)
            .map_err(|e| fail(e.message.clone()))?;
        let converter = RowConverter::new(
            key_schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .map_err(|e| Error::internal(format!("cannot compare keys of {display}: {e}")))?;
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

/// Reads the data files that may hold a touched key and writes their other rows back
/// through `writer`; returns the files to remove (every one after a truncate).
async fn rewrite_touched_files(
    table: &Table,
    schema: &SchemaRef,
    key_columns: &[String],
    keys: &TouchedKeys,
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

/// The changelog's append: every change, in order, with `_op`, `_lsn` and `_commit_ts`
/// before the row image (null in the columns the image lacks).
async fn changelog_change(
    target: &Target,
    changelog: basin_table::Staged,
    changes: &[(&Change, u64, i64)],
    columns: &[String],
    images: &RecordBatch,
) -> Result<StagedChange> {
    let display = target.table.display();
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
            Some(i) => images.column(i).clone(),
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
    Ok(StagedChange {
        key: target.changelog.clone(),
        staged: changelog,
        change: TableChange::Append(writer.close().await?),
    })
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
