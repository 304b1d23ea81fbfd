//! A batch of MySQL transactions applied to the Basin tables: each table's row images decoded
//! into Arrow as a full load decodes them, its keys compared as Arrow rows, then the shared
//! copy-on-write rewrite and changelog append ([`crate::database::cdc`]); every table the
//! batch touched in one catalog commit that records where the log stands after it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use basin_catalog::{CommitRequest, Resolved};
use basin_core::{Error, Result};
use basin_table::{SOURCE_PROPERTY, StagedChange, Tables};
use mysql_async::Value;
use mysql_async::binlog::value::BinlogValue;

use super::gtid::{Gtid, GtidState};
use super::position::{BinlogPos, stored_binlog};
use super::targets::Target;
use super::values::normalize;
use crate::database::cdc::{
    Decoded, KeyRows, Log, arrow_schema, column_names, finish_table, key_converter, key_indices,
    stage_table,
};
use crate::database::follow::{Applied, COMMIT_TIME_PROPERTY, batch_message};
use crate::database::same_type;
use crate::mysql::types::{self, Column, MyColumn};
use crate::mysql::{BINLOG_PROPERTY, GTID_PROPERTY};

/// A row image: each column's value in the table's order at the source.
pub(super) type Image = Vec<Option<BinlogValue<'static>>>;

/// A source table: `(database, table)`.
pub(super) type SourceTable = Arc<(String, String)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
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

/// One row change (or a truncate) of a source table, `(database, table)`.
pub(super) struct Change {
    pub op: Op,
    pub table: SourceTable,
    pub new: Option<Image>,
    pub old: Option<Image>,
    /// The images' column names, when the server logs them (`binlog_row_metadata = FULL`).
    pub names: Option<Arc<[String]>>,
}

/// A committed source transaction.
pub(super) struct Txn {
    /// Where the log stands just after its commit: the position recorded once it is applied.
    pub end: BinlogPos,
    /// Microseconds since the Unix epoch (the log keeps whole seconds).
    pub commit_us: i64,
    pub changes: Vec<Change>,
    /// Its GTID (MariaDB).
    pub id: Option<Gtid>,
    /// MariaDB's GTID state just after it (with the stream's GTIDs known).
    pub gtid: Option<String>,
}

impl Txn {
    /// A transaction begun at `at` (its end is set when it commits).
    pub(super) fn begin(at: BinlogPos, commit_us: i64) -> Self {
        Self {
            end: at,
            commit_us,
            changes: Vec::new(),
            id: None,
            gtid: None,
        }
    }
}

/// Applies `txns` (in commit order) to the tables of `targets` on `branch`, in one catalog
/// commit recording the last one's end.
pub(super) async fn apply(
    tables: &Tables,
    source: &str,
    branch: &str,
    targets: &HashMap<(String, String), Target>,
    txns: &[Txn],
) -> Result<Applied> {
    let at = tables.catalog().resolve(branch).await?;
    // Transactions the tables hold already are left out: another stream of this source (a
    // node that took over, a `--follow` beside `basin serve`) may have committed them.
    // (Those would have touched the same tables: only theirs are read.)
    let touched: std::collections::BTreeSet<&SourceTable> = txns
        .iter()
        .flat_map(|t| t.changes.iter().map(|c| &c.table))
        .collect();
    let keys: Vec<basin_catalog::Key> = touched
        .into_iter()
        .filter_map(|t| targets.get(t.as_ref()).map(|t| t.current.clone()))
        .collect();
    let held = stored_binlog(tables, &at, source, &keys).await?;
    let state = held.gtid.as_deref().and_then(GtidState::parse);
    let mut by_table: HashMap<SourceTable, Vec<(&Change, &Txn)>> = HashMap::new();
    let mut order = Vec::new();
    let txns: Vec<&Txn> = txns
        .iter()
        .filter(|txn| !holds(&held.position, state.as_ref(), txn))
        .collect();
    for txn in txns.iter().copied() {
        for change in &txn.changes {
            if !targets.contains_key(change.table.as_ref()) {
                continue;
            }
            let list = by_table.entry(change.table.clone()).or_default();
            if list.is_empty() {
                order.push(change.table.clone());
            }
            list.push((change, txn));
        }
    }
    let mut applied = Applied::default();
    let mut staged = Vec::new();
    for table in order {
        let changes = &by_table[&table];
        applied.changes += changes.len() as u64;
        let (current, changelog, rewritten) =
            table_changes(tables, &at, source, &targets[table.as_ref()], changes).await?;
        applied.files_rewritten += rewritten;
        staged.push(current);
        staged.push(changelog);
    }
    applied.tables = staged.len() / 2;
    let Some(last) = txns.last() else {
        return Ok(applied);
    };
    if staged.is_empty() {
        return Ok(applied);
    }
    let message = batch_message(
        source,
        txns.len(),
        applied.changes,
        &format!("binlog {}", last.end),
    );
    let mut request = CommitRequest::new(branch, at.commit.clone(), message)
        .with_property(SOURCE_PROPERTY, source)
        .with_property(BINLOG_PROPERTY, last.end.to_string())
        .with_property(COMMIT_TIME_PROPERTY, (last.commit_us / 1000).to_string());
    if let Some(gtid) = &last.gtid {
        request = request.with_property(GTID_PROPERTY, gtid);
    }
    let commit = tables.commit_changes(staged, request).await?;
    applied.commit = Some(commit.id.to_string());
    Ok(applied)
}

/// Whether the tables (at `position`, in `state`) hold `txn` already: by its GTID where both
/// have one, else by its end in the same log file.
fn holds(position: &Option<BinlogPos>, state: Option<&GtidState>, txn: &Txn) -> bool {
    match (state, &txn.id, position) {
        (Some(state), Some(id), _) => state.holds(id),
        (_, _, Some(position)) => position.file == txn.end.file && txn.end <= *position,
        _ => false,
    }
}

/// The staged changes of one source table's batch: its current state and its changelog;
/// and how many data files were rewritten.
async fn table_changes(
    tables: &Tables,
    at: &Resolved,
    source: &str,
    target: &Target,
    changes: &[(&Change, &Txn)],
) -> Result<(StagedChange, StagedChange, usize)> {
    let display = target.table.display();
    let fail = |message: String| Error::invalid(format!("source `{source}`: {display}: {message}"));
    let wanted: Vec<(String, iceberg::spec::Type)> = target
        .columns
        .iter()
        .filter_map(|(c, kind)| kind.map(|k| (c.name.clone(), k.iceberg_type())))
        .collect();
    let current = stage_table(tables, at, &target.current, &wanted, None).await?;
    let columns = column_names(&current.table);
    // Each Basin column's place in the source's rows.
    let places = columns
        .iter()
        .map(|name| {
            target
                .columns
                .iter()
                .position(|(c, kind)| &c.name == name && kind.is_some())
                .ok_or_else(|| {
                    fail(format!("the Basin table has a column {name} that the source no longer has"))
                        .with_hint(format!(
                            "Basin does not drop columns on its own: drop `{}` and `{}` and run `basin ingest {source} --full`",
                            target.current, target.changelog
                        ))
                })
        })
        .collect::<Result<Vec<usize>>>()?;
    // A column retyped at the source since the table was made (`MODIFY c BIGINT`): refused,
    // as a full load refuses it, not decoded into the old type.
    let fields = current
        .table
        .metadata()
        .current_schema()
        .as_struct()
        .fields()
        .to_vec();
    for (field, &place) in fields.iter().zip(&places) {
        let (column, kind) = &target.columns[place];
        let kind = kind.expect("a loaded column");
        if !same_type(&field.field_type, &kind.iceberg_type()) {
            return Err(fail(format!(
                "column {} is {} at the source now, and the Basin table holds {}",
                column.name, column.display, field.field_type
            ))
            .with_hint(format!(
                "Basin does not retype columns on its own: drop both tables (`basin table rm {}` and `basin table rm {}`) and run `basin ingest {source} --full`",
                target.current, target.changelog
            )));
        }
    }
    let schema = arrow_schema(&current.table)?;
    let images = Images::new(target, &schema, &places);
    let (images, olds) = images.decode(changes, &fail)?;
    let indices = key_indices(&columns, &target.key).map_err(fail)?;
    let touched = Touched::collect(changes, &images, &olds, &indices, &display)?;
    let decoded = Decoded {
        keys: KeyRows::new(indices, touched.keys, &display)?,
        images,
        latest: touched.latest,
        truncated: touched.truncated,
        log: Log {
            position_column: "_binlog_pos",
            ops: changes.iter().map(|(c, _)| c.op.code()).collect(),
            positions: changes.iter().map(|(_, t)| t.end.sequence()).collect(),
            commit_us: changes.iter().map(|(_, t)| t.commit_us).collect(),
        },
    };
    finish_table(
        tables,
        at,
        (&target.current, &target.changelog),
        current,
        &wanted,
        &target.key,
        decoded,
        &display,
    )
    .await
}

/// Row images decoded into the Basin table's columns.
struct Images<'a> {
    target: &'a Target,
    schema: &'a SchemaRef,
    /// Each Basin column's place in the source's rows.
    places: &'a [usize],
}

impl<'a> Images<'a> {
    fn new(target: &'a Target, schema: &'a SchemaRef, places: &'a [usize]) -> Self {
        Self {
            target,
            schema,
            places,
        }
    }

    fn builders(&self) -> Result<Vec<Column>> {
        self.places
            .iter()
            .zip(self.schema.fields())
            .map(|(&place, field)| {
                let kind = self.target.columns[place].1.expect("a loaded column");
                Column::new(kind, field.data_type()).map_err(Error::internal)
            })
            .collect()
    }

    /// Each change's image (the new row; the old one for a delete; nulls for a truncate),
    /// and the old rows of updates, in order.
    fn decode(
        &self,
        changes: &[(&Change, &Txn)],
        fail: &dyn Fn(String) -> Error,
    ) -> Result<(RecordBatch, RecordBatch)> {
        let mut images = self.builders()?;
        let mut olds = self.builders()?;
        for (change, txn) in changes {
            let image = match change.op {
                Op::Insert | Op::Update => change.new.as_ref(),
                Op::Delete => change.old.as_ref(),
                Op::Truncate => None,
            };
            let names = change.names.as_deref();
            self.push(&mut images, image, names, fail, &txn.end)?;
            if change.op == Op::Update {
                self.push(&mut olds, change.old.as_ref(), names, fail, &txn.end)?;
            }
        }
        let batch = |columns: &mut [Column]| {
            RecordBatch::try_new(self.schema.clone(), types::finish(columns))
                .map_err(|e| Error::internal(format!("decoded changes do not form a batch: {e}")))
        };
        Ok((batch(&mut images)?, batch(&mut olds)?))
    }

    /// Appends one image (nulls for none). Its values are matched to the table's columns by
    /// name when the log names them; else by position, which holds for a row logged before
    /// columns were added at the end (it has fewer; the added ones are null for it).
    fn push(
        &self,
        builders: &mut [Column],
        image: Option<&Image>,
        names: Option<&[String]>,
        fail: &dyn Fn(String) -> Error,
        at: &BinlogPos,
    ) -> Result<()> {
        let width = self.target.columns.len();
        if let Some(image) = image
            && names.is_none()
            && image.len() > width
        {
            return Err(fail(format!(
                "a row at binlog {at} has {} columns and the table {width}",
                image.len()
            ))
            .with_hint(format!(
                "run `basin ingest SOURCE --full` to load it again as it is now (the log at {at} does not match the table's columns)"
            )));
        }
        for (builder, &place) in builders.iter_mut().zip(self.places) {
            let column: &MyColumn = &self.target.columns[place].0;
            let index = match names {
                Some(names) => names.iter().position(|n| n == &column.name),
                None => Some(place),
            };
            let value = image.and_then(|row| index.and_then(|i| row.get(i).cloned().flatten()));
            let value = match value {
                None => Value::NULL,
                Some(v) => normalize(column, v)
                    .map_err(|e| fail(format!("column {}: {e}", column.name)))?,
            };
            builder
                .push(value)
                .map_err(|e| fail(format!("column {}: {e}", column.name)))?;
        }
        Ok(())
    }
}

/// What one table's changes in a batch touch: the keys in the order first touched (as the
/// key columns), the latest version of each (by its Arrow row: the index of its image, `None`
/// when deleted), and whether the table was truncated.
struct Touched {
    keys: RecordBatch,
    latest: HashMap<Vec<u8>, Option<usize>>,
    truncated: bool,
}

impl Touched {
    fn collect(
        changes: &[(&Change, &Txn)],
        images: &RecordBatch,
        olds: &RecordBatch,
        indices: &[usize],
        display: &str,
    ) -> Result<Self> {
        let keys_of = |batch: &RecordBatch| -> Result<RecordBatch> {
            batch
                .project(indices)
                .map_err(|e| Error::internal(e.to_string()))
        };
        let (new_keys, old_keys) = (keys_of(images)?, keys_of(olds)?);
        let converter = key_converter(&new_keys.schema(), display)?;
        let rows = |batch: &RecordBatch| -> Result<Vec<Vec<u8>>> {
            let rows = converter
                .convert_columns(batch.columns())
                .map_err(|e| Error::internal(format!("cannot compare keys of {display}: {e}")))?;
            Ok(rows.iter().map(|r| r.as_ref().to_vec()).collect())
        };
        let (new_rows, old_rows) = (rows(&new_keys)?, rows(&old_keys)?);
        let mut latest: HashMap<Vec<u8>, Option<usize>> = HashMap::new();
        // (0: an image, 1: an old row; its index), in the order first touched.
        let mut touched: Vec<(usize, usize)> = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut truncated = false;
        let mut old_index = 0;
        for (i, (change, _)) in changes.iter().enumerate() {
            let mut touch = |row: &Vec<u8>, from: (usize, usize), version: Option<usize>| {
                if seen.insert(row.clone()) {
                    touched.push(from);
                }
                latest.insert(row.clone(), version);
            };
            match change.op {
                Op::Truncate => {
                    latest.clear();
                    touched.clear();
                    seen.clear();
                    truncated = true;
                }
                Op::Insert => touch(&new_rows[i], (0, i), Some(i)),
                Op::Delete => touch(&new_rows[i], (0, i), None),
                Op::Update => {
                    let old = &old_rows[old_index];
                    if *old != new_rows[i] {
                        touch(old, (1, old_index), None);
                    }
                    old_index += 1;
                    touch(&new_rows[i], (0, i), Some(i));
                }
            }
        }
        let columns = (0..new_keys.num_columns())
            .map(|c| {
                let sources: [&dyn arrow::array::Array; 2] =
                    [new_keys.column(c).as_ref(), old_keys.column(c).as_ref()];
                arrow::compute::interleave(&sources, &touched)
            })
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()
            .map_err(|e| Error::internal(e.to_string()))?;
        let keys = RecordBatch::try_new(new_keys.schema(), columns)
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Self {
            keys,
            latest,
            truncated,
        })
    }
}
