//! Applies a batch of source transactions to the Basin tables: the changelog appended, the
//! current state rewritten copy-on-write, every table touched in one catalog commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use basin_catalog::{CommitRequest, Resolved};
use basin_core::{Error, Result};
use basin_table::{StagedChange, Tables};
use bytes::Bytes;

use super::changes::{Change, Op, Target, Txn};
use super::pgoutput::Tuple;
use super::position::{COMMIT_TIME_PROPERTY, Position, SOURCE_PROPERTY};
use super::rows::{decode_rows, fill_unchanged, key_bytes, values};
use super::slot;
use super::targets::no_key;
use crate::database::cdc::{
    Decoded, KeyRows, Log, arrow_schema, column_names, finish_table, key_indices, stage_table,
};
use crate::database::follow::{Applied, batch_message};
use crate::postgres::types::Decode;

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
    let message = batch_message(
        source,
        txns.len(),
        applied.changes,
        &format!("lsn {}", slot::format_lsn(position.lsn)),
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
    let current = stage_table(tables, at, &target.current, &wanted, None).await?;
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
    let images = decode_rows(schema.clone(), kinds.clone(), &touched.images)
        .map_err(|e| fail(e.message.clone()))?;
    let indices = key_indices(&columns, &key_columns).map_err(fail)?;
    let key_schema = Arc::new(
        schema
            .project(&indices)
            .map_err(|e| Error::internal(e.to_string()))?,
    );
    let key_kinds: Vec<Decode> = indices.iter().map(|&i| kinds[i]).collect();
    let key_batch =
        decode_rows(key_schema, key_kinds, &touched.keys).map_err(|e| fail(e.message.clone()))?;
    let decoded = Decoded {
        images,
        keys: KeyRows::new(indices, key_batch, &display)?,
        latest: touched.latest,
        truncated: touched.truncated,
        log: Log {
            position_column: "_lsn",
            ops: changes.iter().map(|(c, _, _)| c.op.code()).collect(),
            positions: changes.iter().map(|(_, lsn, _)| *lsn as i64).collect(),
            commit_us: changes.iter().map(|(_, _, us)| *us).collect(),
        },
    };
    finish_table(
        tables,
        at,
        (&target.current, &target.changelog),
        current,
        &wanted,
        &key_columns,
        decoded,
        &display,
    )
    .await
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
