//! A full load of MySQL or MariaDB tables: every table read at one point in time, then
//! replaced in one catalog commit (all or nothing).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use basin_catalog::{CommitRequest, Key};
use basin_core::{Error, Result};
use basin_table::{StagedChange, TableChange, TableWriter, Tables};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::connect::{self, MySource, MyTable, quote};
use super::ranges::{self, KeyRange, Part};
use super::types::{self, Column, Kind, MyColumn};
use crate::database::report::{LoadEvent, LoadProgress, LoadReport, SkippedColumn, TableLoad};
use crate::database::{per_second, stage};

/// Rows per Arrow batch handed to the Parquet writer.
const BATCH_ROWS: usize = 64 * 1024;

/// The snapshot summary property naming where the source's binary log stood when the load
/// read (`file:position`), and its GTID set: where change data capture starts from.
pub const BINLOG_PROPERTY: &str = "basin.source.binlog";
pub const GTID_PROPERTY: &str = "basin.source.gtid";

/// One source table, ready to read.
struct Planned {
    table: MyTable,
    key: Key,
    columns: Vec<(MyColumn, Kind)>,
    staged: basin_table::Staged,
}

/// Loads every table of the source into its namespace on `branch`, replacing the Basin
/// tables' rows, in one commit.
pub async fn load_mysql(
    tables: &Tables,
    source: MySource,
    branch: &str,
    skip_unsupported: bool,
    progress: Option<LoadProgress>,
) -> Result<LoadReport> {
    let started = Instant::now();
    let name = source.name.clone();
    Key::parse(&source.namespace)?;
    let at = tables.catalog().resolve(branch).await?;
    let branch = at.writable_branch()?.to_string();

    let mut coordinator = connect::connect(&source).await?;
    let found = connect::source_tables(&source, &mut coordinator).await?;
    let mut planned = Vec::with_capacity(found.len());
    let mut skipped = Vec::new();
    let mut seen = HashSet::new();
    for table in found {
        let (key, mut columns) = choose_columns(
            &source,
            &mut coordinator,
            &table,
            skip_unsupported,
            &mut skipped,
        )
        .await?;
        if !seen.insert(key.clone()) {
            return Err(Error::invalid(format!(
                "source `{name}`: two source tables would both be `{key}`"
            ))
            .with_hint("list each table once, and not two databases' tables of the same name"));
        }
        let staged = stage(tables, &at, &key, &table.display(), &mut columns).await?;
        planned.push(Planned {
            table,
            key,
            columns,
            staged,
        });
    }
    let mut readers = Vec::new();
    // No more readers than pieces of work: tables, and key ranges of large ones.
    let pieces: usize = planned
        .iter()
        .map(|p| ranges::wanted(&p.table, source.readers))
        .sum();
    for _ in 0..source.readers.clamp(1, pieces.max(1)) {
        readers.push(connect::connect(&source).await?);
    }
    let position = connect::open_snapshot(&source, &mut coordinator, &mut readers).await?;
    let _ = coordinator.disconnect().await;
    tracing::info!(source = %name, tables = planned.len(), readers = readers.len(), ?position, "reading at one point in time");

    let shapes: Vec<(&MyTable, &[(MyColumn, Kind)])> = planned
        .iter()
        .map(|p| (&p.table, p.columns.as_slice()))
        .collect();
    let count = readers.len();
    let parts = ranges::parts(&source, &mut readers[0], &shapes, count).await?;
    let tally = Arc::new(Tally::new(planned.len(), &parts));
    let planned = Arc::new(planned);
    let queue = Arc::new(Mutex::new(parts.into_iter().collect::<VecDeque<_>>()));
    let read = futures::future::try_join_all(readers.into_iter().map(|conn| {
        Reader {
            source: &name,
            plans: &planned,
            tally: &tally,
            progress: progress.as_ref(),
        }
        .read_queue(conn, queue.clone())
    }))
    .await?;
    let planned = Arc::try_unwrap(planned)
        .map_err(|_| Error::internal("the load's plans are still shared"))?;
    let (mut loads, changes) = assemble(planned, read.into_iter().flatten().collect(), &tally);
    loads.sort_by(|a, b| a.table.cmp(&b.table));

    let message = LoadReport::message(&name, &loads);
    let mut request = CommitRequest::new(&branch, at.commit.clone(), message)
        .with_property("basin.source", &name);
    if let Some(at) = &position.file_position {
        request = request.with_property(BINLOG_PROPERTY, at);
    }
    if let Some(gtid) = &position.gtid {
        request = request.with_property(GTID_PROPERTY, gtid);
    }
    let commit = tables.commit_changes(changes, request).await?;
    Ok(LoadReport::new(
        name,
        branch,
        commit.id.to_string(),
        loads,
        skipped,
        started.elapsed().as_secs_f64(),
        position.gtid.or(position.file_position),
    ))
}

/// A table's Basin name and loadable columns; the others go to `skipped` with
/// `skip_unsupported`, else the first stops the load.
async fn choose_columns(
    source: &MySource,
    conn: &mut Conn,
    table: &MyTable,
    skip_unsupported: bool,
    skipped: &mut Vec<SkippedColumn>,
) -> Result<(Key, Vec<(MyColumn, Kind)>)> {
    let name = &source.name;
    let key = Key::table(&format!("{}.{}", source.namespace, table.name)).map_err(|e| {
        Error::invalid(format!(
            "source `{name}`: {} cannot be a Basin table name: {}",
            table.display(),
            e.message
        ))
        .with_hint("load a view with a plain name (letters, digits and `_`) instead")
    })?;
    let mut loadable = Vec::new();
    for column in connect::columns(source, conn, table).await? {
        match column.kind() {
            Ok(kind) => loadable.push((column, kind)),
            Err(reason) if skip_unsupported => skipped.push(SkippedColumn {
                column: format!("{}.{}", table.display(), column.name),
                data_type: column.display.clone(),
                reason,
            }),
            Err(reason) => {
                return Err(Error::invalid(format!(
                    "source `{name}`: column {}.{}: {reason}",
                    table.display(),
                    column.name
                ))
                .with_hint("pass --skip-unsupported to load the other columns without it, or load a view that casts it"));
            }
        }
    }
    if loadable.is_empty() {
        return Err(Error::invalid(format!(
            "source `{name}`: {} has no column Basin can load",
            table.display()
        )));
    }
    Ok((key, loadable))
}

/// What one part of a table read: its rows, their bytes on the wire, and its files.
struct PartRead {
    table: usize,
    rows: u64,
    bytes: u64,
    files: Vec<iceberg::spec::DataFile>,
}

/// Each table's progress over its parts (several readers may read one table).
struct Tally {
    tables: Mutex<Vec<TableTally>>,
}

#[derive(Default)]
struct TableTally {
    parts_left: usize,
    rows: u64,
    started: Option<Instant>,
    seconds: f64,
}

impl Tally {
    fn new(tables: usize, parts: &[Part]) -> Self {
        let mut tallies: Vec<TableTally> = (0..tables).map(|_| TableTally::default()).collect();
        for part in parts {
            tallies[part.table].parts_left += 1;
        }
        Self {
            tables: Mutex::new(tallies),
        }
    }

    fn with<T>(&self, table: usize, f: impl FnOnce(&mut TableTally) -> T) -> T {
        f(&mut self.tables.lock().expect("tally")[table])
    }
}

/// One reader: parts taken from the queue until it is empty.
struct Reader<'a> {
    source: &'a str,
    plans: &'a [Planned],
    tally: &'a Tally,
    progress: Option<&'a LoadProgress>,
}

impl Reader<'_> {
    async fn read_queue(
        self,
        mut conn: Conn,
        queue: Arc<Mutex<VecDeque<Part>>>,
    ) -> Result<Vec<PartRead>> {
        let mut read = Vec::new();
        loop {
            let Some(part) = queue.lock().expect("parts to read").pop_front() else {
                break;
            };
            let plan = &self.plans[part.table];
            let key = plan.key.to_string();
            let first = self.tally.with(part.table, |t| {
                let first = t.started.is_none();
                t.started.get_or_insert_with(Instant::now);
                first
            });
            if first && let Some(progress) = self.progress {
                progress(LoadEvent::Started {
                    table: &key,
                    estimated_rows: plan.table.estimated_rows,
                });
            }
            let (rows, bytes, files) = self.read_part(&mut conn, &part).await?;
            let done = self.tally.with(part.table, |t| {
                t.parts_left -= 1;
                (t.parts_left == 0).then(|| {
                    t.seconds = t.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
                    (t.rows, t.seconds)
                })
            });
            if let (Some((rows, seconds)), Some(progress)) = (done, self.progress) {
                progress(LoadEvent::Finished {
                    table: &key,
                    rows,
                    seconds,
                });
            }
            read.push(PartRead {
                table: part.table,
                rows,
                bytes,
                files,
            });
        }
        let _ = conn.disconnect().await;
        Ok(read)
    }

    /// Reads one part of a table in its snapshot (binary protocol: typed values) into
    /// Parquet files.
    async fn read_part(
        &self,
        conn: &mut Conn,
        part: &Part,
    ) -> Result<(u64, u64, Vec<iceberg::spec::DataFile>)> {
        let plan = &self.plans[part.table];
        let failed = |what: String| {
            Error::invalid(format!(
                "source `{}`: {}: {what}",
                self.source,
                plan.table.display()
            ))
        };
        let schema: SchemaRef = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(plan.staged.table.metadata().current_schema())
                .map_err(basin_table::from_iceberg("table schema"))?,
        );
        let mut columns = plan
            .columns
            .iter()
            .zip(schema.fields())
            .map(|((_, kind), field)| Column::new(*kind, field.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(failed)?;
        let names: Vec<String> = plan.columns.iter().map(|(c, _)| quote(&c.name)).collect();
        let statement = format!(
            "SELECT {} FROM {}{}",
            names.join(", "),
            plan.table.quoted(),
            part.range
                .as_ref()
                .map(KeyRange::predicate)
                .unwrap_or_default()
        );
        let mut writer = TableWriter::new(&plan.staged.table).await?;
        let mut result = conn
            .exec_iter(statement, ())
            .await
            .map_err(|e| failed(format!("cannot read: {e}")))?;
        let (mut rows, mut bytes, mut in_batch) = (0u64, 0u64, 0usize);
        let key = plan.key.to_string();
        while let Some(row) = result
            .next()
            .await
            .map_err(|e| failed(format!("reading stopped: {e}")))?
        {
            for ((column, (source_column, _)), value) in
                columns.iter_mut().zip(&plan.columns).zip(row.unwrap())
            {
                bytes += value_size(&value);
                column
                    .push(value)
                    .map_err(|why| failed(format!("column `{}`: {why}", source_column.name)))?;
            }
            rows += 1;
            in_batch += 1;
            if in_batch == BATCH_ROWS {
                write(&mut writer, &schema, &mut columns).await?;
                in_batch = 0;
                let so_far = self.tally.with(part.table, |t| {
                    t.rows += BATCH_ROWS as u64;
                    t.rows
                });
                if let Some(progress) = self.progress {
                    progress(LoadEvent::Rows {
                        table: &key,
                        rows: so_far,
                    });
                }
            }
        }
        drop(result);
        if in_batch > 0 {
            write(&mut writer, &schema, &mut columns).await?;
        }
        self.tally
            .with(part.table, |t| t.rows += rows % BATCH_ROWS as u64);
        Ok((rows, bytes, writer.close().await?))
    }
}

/// Each table's load and its staged replacement, from the parts read.
fn assemble(
    planned: Vec<Planned>,
    parts: Vec<PartRead>,
    tally: &Tally,
) -> (Vec<TableLoad>, Vec<StagedChange>) {
    let mut by_table: Vec<(u64, u64, Vec<iceberg::spec::DataFile>)> =
        (0..planned.len()).map(|_| (0, 0, Vec::new())).collect();
    for part in parts {
        let entry = &mut by_table[part.table];
        entry.0 += part.rows;
        entry.1 += part.bytes;
        entry.2.extend(part.files);
    }
    let mut loads = Vec::new();
    let mut changes = Vec::new();
    for (i, (plan, (rows, bytes, files))) in planned.into_iter().zip(by_table).enumerate() {
        let seconds = tally.with(i, |t| t.seconds);
        loads.push(TableLoad {
            source_table: plan.table.display(),
            table: plan.key.to_string(),
            created: plan.staged.created,
            rows,
            bytes,
            data_files: files.len(),
            seconds,
            rows_per_second: per_second(rows, seconds),
        });
        changes.push(StagedChange {
            key: plan.key,
            staged: plan.staged,
            change: TableChange::Replace(files),
        });
    }
    (loads, changes)
}

async fn write(writer: &mut TableWriter, schema: &SchemaRef, columns: &mut [Column]) -> Result<()> {
    let batch = RecordBatch::try_new(schema.clone(), types::finish(columns))
        .map_err(|e| Error::internal(format!("a batch of the table's columns: {e}")))?;
    writer.write(batch).await
}

/// About the bytes a value took on the wire.
fn value_size(value: &mysql_async::Value) -> u64 {
    match value {
        mysql_async::Value::Bytes(b) => b.len() as u64,
        mysql_async::Value::NULL => 0,
        _ => 8,
    }
}
