//! Incremental models (`@basin.model(incremental=True, key=...)`, or `-- basin: incremental
//! key=...` at the top of a SQL model): a model that reads only what its table inputs gained
//! and lost since its last successful run on the target branch, and appends (no key) or
//! merges by key into its output.
//!
//! The cursor is the snapshot of each table input the last run read up to. It is kept in the
//! output table's snapshot summary (`basin.incremental.NS.TABLE`), written by the same commit
//! as the output, so the cursor moves exactly when the output does: a failed run moves
//! neither, a replayed run starts from the same commit and reads the same cursor. The inputs
//! are read with `table_changes` between the cursor and the input's snapshot at the run's
//! start (`_change`, `_commit`, `_snapshot_id` included); a model's output may carry `_change`,
//! and its `delete`/`update_before` rows then remove their key instead of being written.
//! Inputs that are other models of the run are read whole, as always.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use basin_catalog::{Key, Resolved};
use basin_core::{Error, Result};
use basin_runtime::ModelInput;

use super::Produced;
use crate::Lakehouse;

/// The snapshot summary key prefix of a cursor: `basin.incremental.NS.TABLE = SNAPSHOT`.
pub(crate) const CURSOR: &str = "basin.incremental.";

/// The change columns `table_changes` adds, which an output does not keep.
const CHANGE_COLUMNS: [&str; 3] = ["_change", "_commit", "_snapshot_id"];

/// How an incremental model stores its output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incremental {
    /// The columns that identify a row of the output: merged by them. Empty: appended.
    pub key: Vec<String>,
}

/// What one run of an incremental model reads: per table input, the snapshot it starts from
/// (the cursor; 0 for a first run or `--full-refresh`) and the one it reads up to.
#[derive(Debug, Default)]
pub(crate) struct Window {
    pub(crate) from: BTreeMap<String, i64>,
    pub(crate) to: BTreeMap<String, i64>,
    /// No cursor (a first run, or `--full-refresh`): the output is rebuilt whole.
    pub(crate) rebuild: bool,
}

impl Window {
    /// The window of a model whose output is `output` and whose table inputs are `inputs`,
    /// read at `at`.
    pub(crate) async fn read(
        lake: &Lakehouse,
        at: &Resolved,
        output: &str,
        inputs: &[String],
        full_refresh: bool,
    ) -> Result<Self> {
        let cursors = match full_refresh {
            true => None,
            false => cursors(lake, at, output).await?,
        };
        let mut window = Window {
            rebuild: cursors.is_none(),
            ..Window::default()
        };
        for input in inputs {
            let to = snapshot_of(lake, at, input).await?;
            let from = cursors
                .as_ref()
                .and_then(|c| c.get(input).copied())
                .unwrap_or(basin_sql::BEFORE_THE_TABLE);
            window.from.insert(input.clone(), from);
            window.to.insert(input.clone(), to);
        }
        Ok(window)
    }

    /// The SQL reading `input`'s changes in this window (its columns and filter applied; the
    /// change columns kept).
    pub(crate) fn changes_sql(&self, input: &ModelInput, table: &str) -> String {
        let columns = input
            .columns
            .clone()
            .filter(|c| !c.is_empty())
            .map(|mut c| {
                c.extend(CHANGE_COLUMNS.iter().map(|c| c.to_string()));
                c
            });
        crate::functions::select_sql(&ModelInput {
            name: format!(
                "table_changes('{table}', '{}', '{}')",
                self.from.get(table).copied().unwrap_or_default(),
                self.to.get(table).copied().unwrap_or_default()
            ),
            columns,
            filter: input.filter.clone(),
        })
    }

    /// The snapshot summary properties recording this window's end as the new cursor.
    pub(crate) fn properties(&self) -> BTreeMap<String, String> {
        self.to
            .iter()
            .map(|(table, snapshot)| (format!("{CURSOR}{table}"), snapshot.to_string()))
            .collect()
    }
}

/// The cursors the last incremental run left in `output`'s snapshots at `at` (the newest
/// snapshot that has any; other writers' snapshots since carry none), or `None`.
async fn cursors(
    lake: &Lakehouse,
    at: &Resolved,
    output: &str,
) -> Result<Option<BTreeMap<String, i64>>> {
    let key = Key::table(output)?;
    let Some(table) = lake.iceberg_tables().load_if_present(at, &key).await? else {
        return Ok(None);
    };
    let metadata = table.metadata();
    let mut cursor = metadata.current_snapshot_id();
    while let Some(id) = cursor {
        let Some(snapshot) = metadata.snapshot_by_id(id) else {
            break;
        };
        let found: BTreeMap<String, i64> = snapshot
            .summary()
            .additional_properties
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(CURSOR)?.to_string(), v.parse().ok()?)))
            .collect();
        if !found.is_empty() {
            return Ok(Some(found));
        }
        cursor = snapshot.parent_snapshot_id();
    }
    Ok(None)
}

/// The current snapshot of table `name` at `at` (0: none yet).
async fn snapshot_of(lake: &Lakehouse, at: &Resolved, name: &str) -> Result<i64> {
    let key = Key::table(name)?;
    match lake.iceberg_tables().load_if_present(at, &key).await? {
        Some(table) => Ok(table
            .metadata()
            .current_snapshot_id()
            .unwrap_or(basin_sql::BEFORE_THE_TABLE)),
        None => Err(Error::not_found(format!(
            "table `{name}` does not exist on `{}`",
            at.spec
        ))),
    }
}

/// `delta` without the rows that delete (`_change` of `delete` or `update_before`) and
/// without the change columns; and the rows that delete, for a merge to remove their keys.
pub(crate) fn split(delta: &Produced) -> Result<(Produced, Produced)> {
    let keep: Vec<usize> = (0..delta.schema.fields().len())
        .filter(|&i| !CHANGE_COLUMNS.contains(&delta.schema.field(i).name().as_str()))
        .collect();
    let schema: SchemaRef = Arc::new(
        delta
            .schema
            .project(&keep)
            .map_err(|e| Error::internal(format!("{e}")))?,
    );
    let change = delta.schema.index_of("_change").ok();
    let (mut kept, mut gone) = (Vec::new(), Vec::new());
    for batch in &delta.batches {
        let deleting: BooleanArray = match change {
            Some(i) => {
                let column = cast(batch.column(i), &arrow::datatypes::DataType::Utf8)
                    .map_err(|e| Error::internal(format!("_change: {e}")))?;
                let column = column
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("cast to Utf8");
                column
                    .iter()
                    .map(|v| Some(matches!(v, Some("delete" | "update_before"))))
                    .collect()
            }
            None => BooleanArray::from(vec![false; batch.num_rows()]),
        };
        let projected = batch
            .project(&keep)
            .map_err(|e| Error::internal(format!("{e}")))?;
        let not_deleting = arrow::compute::not(&deleting).map_err(arrow_error)?;
        kept.push(filter_record_batch(&projected, &not_deleting).map_err(arrow_error)?);
        gone.push(filter_record_batch(&projected, &deleting).map_err(arrow_error)?);
    }
    Ok((
        Produced {
            schema: schema.clone(),
            batches: kept,
        },
        Produced {
            schema,
            batches: gone,
        },
    ))
}

/// `existing` rows whose key no row of `upserts` or `deletes` has, then `upserts`: the
/// output after a merge by `key`. The existing rows are read with `upserts`' columns (by
/// name; a column they lack is null).
pub(crate) fn merge(
    existing: &Produced,
    upserts: &Produced,
    deletes: &Produced,
    key: &[String],
) -> Result<Produced> {
    let schema = upserts.schema.clone();
    let positions: Vec<usize> = key
        .iter()
        .map(|k| {
            schema.index_of(k).map_err(|_| {
                Error::invalid(format!("the model's output has no key column `{k}`"))
                    .with_hint("return the key columns the model declares (key=...)")
            })
        })
        .collect::<Result<_>>()?;
    let converter = RowConverter::new(
        positions
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )
    .map_err(arrow_error)?;
    let mut keys: HashSet<Vec<u8>> = HashSet::new();
    for batch in upserts.batches.iter().chain(&deletes.batches) {
        let columns: Vec<_> = positions.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = converter.convert_columns(&columns).map_err(arrow_error)?;
        keys.extend(rows.iter().map(|r| r.as_ref().to_vec()));
    }
    let mut batches = Vec::new();
    for batch in &existing.batches {
        let batch = basin_sql::conform(batch, &schema).map_err(arrow_error)?;
        let columns: Vec<_> = positions.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = converter.convert_columns(&columns).map_err(arrow_error)?;
        let keep: BooleanArray = rows
            .iter()
            .map(|r| Some(!keys.contains(r.as_ref())))
            .collect();
        batches.push(filter_record_batch(&batch, &keep).map_err(arrow_error)?);
    }
    batches.extend(upserts.batches.iter().cloned());
    Ok(Produced { schema, batches })
}

fn arrow_error(e: arrow::error::ArrowError) -> Error {
    Error::internal(format!("merging an incremental model's output: {e}"))
}
