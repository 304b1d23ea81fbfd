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
    for _ in 0..source.readers.clamp(1, planned.len().max(1)) {
        readers.push(connect::connect(&source).await?);
    }
    let position = connect::open_snapshot(&source, &mut coordinator, &mut readers).await?;
    let _ = coordinator.disconnect().await;
    tracing::info!(source = %name, tables = planned.len(), readers = readers.len(), ?position, "reading at one point in time");

    let queue = Arc::new(Mutex::new(planned.into_iter().collect::<VecDeque<_>>()));
    let read = futures::future::try_join_all(
        readers
            .into_iter()
            .map(|conn| read_queue(&name, conn, queue.clone(), progress.clone())),
    )
    .await?;
    let (mut loads, mut changes) = (Vec::new(), Vec::new());
    for (l, c) in read {
        loads.extend(l);
        changes.extend(c);
    }
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

type Read = (Vec<TableLoad>, Vec<StagedChange>);

/// One reader's share: tables taken from `queue` until it is empty, each read whole.
async fn read_queue(
    source: &str,
    mut conn: Conn,
    queue: Arc<Mutex<VecDeque<Planned>>>,
    progress: Option<LoadProgress>,
) -> Result<Read> {
    let (mut loads, mut changes) = (Vec::new(), Vec::new());
    loop {
        let Some(plan) = queue.lock().expect("tables to read").pop_front() else {
            break;
        };
        let started = Instant::now();
        let key = plan.key.to_string();
        if let Some(progress) = &progress {
            progress(LoadEvent::Started {
                table: &key,
                estimated_rows: plan.table.estimated_rows,
            });
        }
        let (rows, bytes, files) = read_table(source, &mut conn, &plan, progress.as_ref()).await?;
        let seconds = started.elapsed().as_secs_f64();
        if let Some(progress) = &progress {
            progress(LoadEvent::Finished {
                table: &key,
                rows,
                seconds,
            });
        }
        loads.push(TableLoad {
            source_table: plan.table.display(),
            table: key,
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
    let _ = conn.disconnect().await;
    Ok((loads, changes))
}

/// Reads one table in its snapshot (binary protocol: typed values) into Parquet files.
async fn read_table(
    source: &str,
    conn: &mut Conn,
    plan: &Planned,
    progress: Option<&LoadProgress>,
) -> Result<(u64, u64, Vec<iceberg::spec::DataFile>)> {
    let failed = |what: String| {
        Error::invalid(format!(
            "source `{source}`: {}: {what}",
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
    let statement = format!("SELECT {} FROM {}", names.join(", "), plan.table.quoted());
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
            if let Some(progress) = progress {
                progress(LoadEvent::Rows { table: &key, rows });
            }
        }
    }
    drop(result);
    if in_batch > 0 {
        write(&mut writer, &schema, &mut columns).await?;
    }
    Ok((rows, bytes, writer.close().await?))
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
