//! `basin table compact`: a table's small data files rewritten into files of the target
//! size, the same rows, in one commit: an Iceberg `replace` snapshot.
//!
//! Small means under three quarters of the target size (as Iceberg's own rewrite decides),
//! so a table that is already made of full files is left alone, and a big table with a tail
//! of small appends rewrites only the tail. The target is `--target-file-size`, else the
//! table's `write.target-file-size-bytes`, else 128 MiB.
//!
//! The rows of the chosen files are read through iceberg's reader at the branch head's
//! snapshot and written with Basin's writer (its partitioning and row groups). The commit
//! swaps exactly the files that were read: files another writer appended meanwhile stay (the
//! change is staged again on the new head, as every Basin write is); if a file that was read
//! is gone (another compaction, a replace), the compaction stops with a conflict and changes
//! nothing.
//!
//! With `--sort-by COL,...`, every live file is rewritten, its rows sorted by those columns
//! (ascending, nulls first) through the SQL engine, so a sort bigger than memory spills to
//! disk under `[sql]`'s limits; the order becomes the table's Iceberg sort order, which
//! tells engines how its files are laid out (each file's min/max then prunes scans). A table
//! with a sort order (set so, or by another engine) gets its rewritten rows sorted by it
//! every time; its plain columns, that is (a `bucket` or other transform is not applied).
//!
//! Not yet: tables with delete files (refused by name).

use std::collections::HashSet;
use std::time::Instant;

use basin_catalog::{Clearance, CommitRequest, Key};
use basin_core::{Error, Result};
use basin_table::{TableChange, TableWriter, Tables};
use futures::{StreamExt, TryStreamExt};
use iceberg::scan::FileScanTask;
use serde::Serialize;

use super::Maintenance;

/// What `basin table compact` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct CompactOptions {
    /// Default: the current branch.
    pub branch: Option<String>,
    /// Say what would be rewritten; change nothing.
    pub dry_run: bool,
    /// Default: the table's `write.target-file-size-bytes`, else 128 MiB.
    pub target_file_size: Option<u64>,
    /// Sort the rows by these columns (and rewrite every file); empty: keep their order.
    pub sort_by: Vec<String>,
}

/// What a compaction did (or, in a dry run, would do).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct CompactReport {
    pub table: String,
    pub branch: String,
    pub dry_run: bool,
    pub target_file_size: u64,
    /// Live data files before and after.
    pub files_before: u64,
    pub files_after: u64,
    /// The small files rewritten, their rows and bytes.
    pub files_rewritten: u64,
    pub rows: u64,
    pub bytes_rewritten: u64,
    /// The columns the rewritten rows are sorted by: `--sort-by`'s, else the table's order.
    #[serde(default)]
    pub sorted_by: Vec<String>,
    /// The new commit, unless nothing was done.
    pub commit: Option<String>,
    pub seconds: f64,
}

/// Whether a file this big is worth rewriting at `target` bytes.
fn is_small(bytes: u64, target: u64) -> bool {
    bytes < target / 4 * 3
}

impl Maintenance<'_> {
    /// Compacts `name`; see the module docs.
    pub async fn compact_table(
        &self,
        name: &str,
        options: &CompactOptions,
    ) -> Result<CompactReport> {
        let clock = Instant::now();
        let key = Key::table(name)?;
        let at = self.lake.resolve(options.branch.as_deref()).await?;
        let branch = at.writable_branch()?.to_string();
        let table = self.lake.iceberg_tables().load(&at, &key).await?;
        let target = options
            .target_file_size
            .unwrap_or_else(|| basin_table::target_file_size(table.metadata().properties()));
        let live = basin_table::planned_files(&table, None).await?;
        if live.iter().any(|task| !task.deletes.is_empty()) {
            return Err(Error::invalid(format!(
                "`{key}` has delete files, which compaction cannot apply yet"
            ))
            .with_hint("rewrite the table with `basin import --mode replace` to drop them"));
        }
        let sort_order = sort_order(&table, &options.sort_by)?;
        // A sort rewrites every file: sorting only the small ones would not order the table.
        let small: Vec<FileScanTask> = live
            .iter()
            .filter(|task| sort_order.is_some() || is_small(task.file_size_in_bytes, target))
            .cloned()
            .collect();
        let bytes: u64 = small.iter().map(|t| t.file_size_in_bytes).sum();
        let rows: u64 = small.iter().filter_map(|t| t.record_count).sum();
        let mut report = CompactReport {
            table: key.to_string(),
            branch: branch.clone(),
            dry_run: options.dry_run,
            target_file_size: target,
            files_before: live.len() as u64,
            files_after: live.len() as u64,
            files_rewritten: 0,
            rows: 0,
            bytes_rewritten: 0,
            sorted_by: Vec::new(),
            commit: None,
            seconds: 0.0,
        };
        let keys = sort_keys(&table, &options.sort_by);
        report.sorted_by = keys.iter().map(|k| k.0.clone()).collect();
        // One small file is already as compact as it gets (unless it is to be sorted).
        if small.is_empty() || (small.len() == 1 && sort_order.is_none()) {
            report.seconds = clock.elapsed().as_secs_f64();
            return Ok(report);
        }
        report.files_rewritten = small.len() as u64;
        report.rows = rows;
        report.bytes_rewritten = bytes;
        if options.dry_run {
            // At least one file, one per target size of what is rewritten (compressed alike).
            let after = bytes.div_ceil(target).max(1);
            report.files_after = live.len() as u64 - small.len() as u64 + after;
            report.seconds = clock.elapsed().as_secs_f64();
            return Ok(report);
        }
        let removed: HashSet<String> = small.iter().map(|t| t.data_file_path.clone()).collect();
        let mut writer = TableWriter::with_target_size(&table, target).await?;
        self.write_rows(&at, &table, small, &keys, &mut writer)
            .await?;
        let written = writer.rows();
        let added = writer.close().await?;
        if written != rows {
            return Err(Error::internal(format!(
                "compacting `{key}` read {written} rows where its files hold {rows}; nothing was committed"
            )));
        }
        report.files_after = live.len() as u64 - removed.len() as u64 + added.len() as u64;
        let change = TableChange::Compact {
            removed,
            added,
            sort_order,
        };
        let request = CommitRequest::new(
            &branch,
            at.commit.clone(),
            format!(
                "compact {key}: {} files into {}{}",
                report.files_rewritten,
                report.files_after + report.files_rewritten - report.files_before,
                if report.sorted_by.is_empty() {
                    String::new()
                } else {
                    format!(", sorted by {}", report.sorted_by.join(", "))
                }
            ),
        )
        .cleared(Clearance::Maintenance);
        let outcome = self
            .lake
            .iceberg_tables()
            .commit_change(&key, Tables::stage_existing(table), change, request)
            .await
            .map_err(|e| {
                e.with_hint(format!(
                    "nothing changed; run `basin table compact {key}` again"
                ))
            })?;
        report.commit = Some(outcome.commit.id.to_string());
        report.seconds = clock.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// A column to sort by: its name, ascending, nulls first.
type SortKey = (String, bool, bool);

/// What compacted rows are sorted by: `--sort-by`'s columns (ascending, nulls first), else
/// the table's own sort order where it sorts plain columns (`bucket` and other transforms
/// are not applied: the rows keep their order), else nothing.
fn sort_keys(table: &iceberg::table::Table, sort_by: &[String]) -> Vec<SortKey> {
    use iceberg::spec::{NullOrder, SortDirection, Transform};
    if !sort_by.is_empty() {
        return sort_by.iter().map(|c| (c.clone(), true, true)).collect();
    }
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    let order = metadata.default_sort_order();
    let keys: Option<Vec<SortKey>> = order
        .fields
        .iter()
        .map(|f| {
            let name = schema.name_by_field_id(f.source_id)?;
            (f.transform == Transform::Identity).then(|| {
                (
                    name.to_string(),
                    f.direction == SortDirection::Ascending,
                    f.null_order == NullOrder::First,
                )
            })
        })
        .collect();
    keys.unwrap_or_default()
}

impl Maintenance<'_> {
    /// Writes the rows of `files`, sorted by `keys` if any. The sort runs in a SQL session's
    /// DataFusion context, under `[sql]`'s memory limits: past them it spills to disk.
    async fn write_rows(
        &self,
        at: &basin_catalog::Resolved,
        table: &iceberg::table::Table,
        files: Vec<FileScanTask>,
        keys: &[SortKey],
        writer: &mut TableWriter,
    ) -> Result<()> {
        use datafusion::error::DataFusionError;
        let context = format!("cannot read `{}` to compact it", table.identifier());
        let mut batches = basin_table::feed::read_tasks(table, files)?
            .map_err(|e| DataFusionError::External(Box::new(e)));
        let df = |e: DataFusionError| Error::internal(format!("{context}: {e}"));
        if keys.is_empty() {
            while let Some(batch) = batches.try_next().await.map_err(df)? {
                writer.write(batch).await?;
            }
            return Ok(());
        }
        // The first batch says the schema the sort sees.
        let Some(first) = batches.try_next().await.map_err(df)? else {
            return Ok(());
        };
        let schema = first.schema();
        let rows = futures::stream::once(async { Ok(first) }).chain(batches);
        let session =
            basin_sql::Session::new(self.lake.sql(), self.lake.iceberg_tables(), at, None).await?;
        let source = OneStream {
            schema: schema.clone(),
            stream: std::sync::Mutex::new(Some(Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    schema.clone(),
                    rows,
                ),
            ))),
        };
        let input = datafusion::catalog::streaming::StreamingTable::try_new(
            schema,
            vec![std::sync::Arc::new(source)],
        )
        .map_err(df)?;
        let order = keys
            .iter()
            .map(|(name, ascending, nulls_first)| {
                datafusion::prelude::ident(name).sort(*ascending, *nulls_first)
            })
            .collect();
        let mut sorted = session
            .context()
            .read_table(std::sync::Arc::new(input))
            .and_then(|frame| frame.sort(order))
            .map_err(df)?
            .execute_stream()
            .await
            .map_err(df)?;
        while let Some(batch) = sorted.try_next().await.map_err(df)? {
            writer.write(batch).await?;
        }
        Ok(())
    }
}

/// A stream DataFusion reads once: the rows being compacted.
struct OneStream {
    schema: datafusion::arrow::datatypes::SchemaRef,
    stream: std::sync::Mutex<Option<datafusion::execution::SendableRecordBatchStream>>,
}

impl std::fmt::Debug for OneStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneStream")
    }
}

impl datafusion::physical_plan::streaming::PartitionStream for OneStream {
    fn schema(&self) -> &datafusion::arrow::datatypes::SchemaRef {
        &self.schema
    }

    fn execute(
        &self,
        _ctx: std::sync::Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::execution::SendableRecordBatchStream {
        self.stream
            .lock()
            .expect("one stream")
            .take()
            .expect("the compaction's rows are read once")
    }
}

/// The Iceberg sort order of `columns` (ascending, nulls first), checked against the table's
/// schema; `None` for no columns.
fn sort_order(
    table: &iceberg::table::Table,
    columns: &[String],
) -> Result<Option<iceberg::spec::SortOrder>> {
    use iceberg::spec::{NullOrder, SortDirection, SortField, SortOrder, Transform};
    if columns.is_empty() {
        return Ok(None);
    }
    let schema = table.metadata().current_schema();
    let mut order = SortOrder::builder();
    for column in columns {
        let Some(field) = schema.field_by_name(column) else {
            return Err(Error::invalid(format!(
                "`{}` has no column `{column}` to sort by",
                table.identifier()
            ))
            .with_hint(basin_table::unknown_column_hint(schema, column)));
        };
        order.with_sort_field(SortField {
            source_id: field.id,
            transform: Transform::Identity,
            direction: SortDirection::Ascending,
            null_order: NullOrder::First,
        });
    }
    order.build(schema).map(Some).map_err(|e| {
        Error::invalid(format!(
            "cannot sort `{}` by {}: {}",
            table.identifier(),
            columns.join(", "),
            e.message()
        ))
        .with_hint("sort by columns of simple types (numbers, strings, dates, timestamps)")
    })
}
