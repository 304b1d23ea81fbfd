//! A full load: every table of a source read from one snapshot, then replaced in one commit.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use basin_catalog::{CommitRequest, Key};
use basin_core::{Error, Result};
use basin_table::{StagedChange, TableChange, Tables};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::cdc::Position;
use super::cdc::slot::{self, CreatedSlot};
use super::connect::{self, PgTable};
use super::read;
use super::source::PgSource;
use super::types::{self, Decode, PgColumn};
use crate::database::report::{LoadEvent, LoadProgress, LoadReport, SkippedColumn, TableLoad};
use crate::database::{per_second, stage};

/// What to load, where.
#[derive(Clone, Debug)]
pub struct LoadRequest {
    pub source: PgSource,
    pub branch: String,
    /// Leave out columns whose type Basin cannot store (reported), instead of failing.
    pub skip_unsupported: bool,
    /// Change data capture: create this replication slot and read from its exported snapshot;
    /// the commit records the slot's consistent point (see [`cdc`]).
    pub slot: Option<String>,
}

/// One source table, ready to read: its loadable columns and the staged Basin table.
struct Planned {
    table: PgTable,
    key: Key,
    columns: Vec<(PgColumn, Decode)>,
    staged: basin_table::Staged,
}

/// Loads every table of the source, replacing the Basin tables' rows, in one commit.
pub async fn load(
    tables: &Tables,
    request: LoadRequest,
    progress: Option<LoadProgress>,
) -> Result<LoadReport> {
    let started = Instant::now();
    let source = &request.source;
    let name = source.name.as_str();
    Key::parse(&source.namespace)?;
    let catalog = tables.catalog();
    let at = catalog.resolve(&request.branch).await?;
    let branch = at.writable_branch()?.to_string();

    let mut coordinator = connect::connect(source).await?;
    let (created, snapshot) = open_snapshot(&mut coordinator, &request).await?;
    let (chosen, skipped) = choose_tables(&mut coordinator, &request).await?;
    let mut planned = Vec::with_capacity(chosen.len());
    for (table, key, mut columns) in chosen {
        let staged = stage(tables, &at, &key, &table.display(), &mut columns).await?;
        planned.push(Planned {
            table,
            key,
            columns,
            staged,
        });
    }
    let mut readers = Vec::with_capacity(source.readers.max(1));
    for _ in 0..source.readers.max(1) {
        let mut conn = connect::connect(source).await?;
        connect::import_snapshot(&mut conn, &snapshot, name).await?;
        readers.push(conn);
    }
    // Every reader holds the snapshot now; the exporting transaction (or session) can end.
    let _ = coordinator.close().await;
    let position = created.map(|created| {
        drop(created.session);
        Position {
            lsn: created.consistent_point,
            slot: request.slot.clone().unwrap_or_default(),
            system_id: created.system_id,
        }
    });
    tracing::info!(source = name, %snapshot, tables = planned.len(), readers = readers.len(), "reading from one snapshot");
    let (loads, changes) = read_tables(name, planned, &mut readers, progress.as_ref()).await?;
    for conn in readers {
        let _ = conn.close().await;
    }

    let message = LoadReport::message(name, &loads);
    let mut commit_request =
        CommitRequest::new(&branch, at.commit.clone(), message).with_property("basin.source", name);
    if let Some(position) = &position {
        commit_request = position.record(commit_request);
    }
    let commit = tables.commit_changes(changes, commit_request).await?;
    Ok(LoadReport::new(
        name.to_string(),
        branch,
        commit.id.to_string(),
        loads,
        skipped,
        started.elapsed().as_secs_f64(),
        position.map(|p| slot::format_lsn(p.lsn)),
    ))
}

/// Opens the snapshot every table is read from: exported by the coordinator's transaction,
/// or, for change data capture, by a new replication slot (created after dropping one left
/// of that name), whose session must run nothing else until every reader has imported it.
async fn open_snapshot(
    coordinator: &mut PgConnection,
    request: &LoadRequest,
) -> Result<(Option<CreatedSlot>, String)> {
    let source = &request.source;
    let name = source.name.as_str();
    let created = match &request.slot {
        Some(slot) => {
            slot::drop_slot(coordinator, name, slot).await?;
            Some(slot::create_slot(source, slot).await?)
        }
        None => None,
    };
    let snapshot = match &created {
        Some(created) => {
            connect::import_snapshot(coordinator, &created.snapshot, name).await?;
            created.snapshot.clone()
        }
        None => connect::export_snapshot(coordinator, name).await?,
    };
    Ok((created, snapshot))
}

/// A source table chosen for the load: its Basin name and its loadable columns.
type Chosen = (PgTable, Key, Vec<(PgColumn, Decode)>);

/// The source's tables with their Basin names and loadable columns, and the columns left
/// out (`--skip-unsupported`). Every table and column is checked before anything is written.
async fn choose_tables(
    coordinator: &mut PgConnection,
    request: &LoadRequest,
) -> Result<(Vec<Chosen>, Vec<SkippedColumn>)> {
    let source = &request.source;
    let name = source.name.as_str();
    let found = connect::source_tables(coordinator, source).await?;
    let mut seen = HashSet::new();
    let mut skipped = Vec::new();
    let mut chosen = Vec::new();
    for table in found {
        let key = Key::table(&format!("{}.{}", source.namespace, table.name)).map_err(|e| {
            Error::invalid(format!(
                "source `{name}`: {} cannot be a Basin table name: {}",
                table.display(),
                e.message
            ))
            .with_hint("load a view with a plain name (letters, digits and `_`) instead")
        })?;
        if !seen.insert(key.clone()) {
            return Err(Error::invalid(format!(
                "source `{name}`: two source tables would both be `{key}`"
            ))
            .with_hint("list each table once, and not two schemas' tables of the same name"));
        }
        let columns = connect::columns(coordinator, name, &table).await?;
        let mut loadable = Vec::new();
        let mut unsupported = Vec::new();
        for column in columns {
            match types::decode_of(&column) {
                Ok(kind) => loadable.push((column, kind)),
                Err(why) => unsupported.push(SkippedColumn {
                    column: format!("{}.{}", table.display(), column.name),
                    data_type: column.display.clone(),
                    reason: why.reason,
                }),
            }
        }
        if let Some(first) = unsupported.first()
            && !request.skip_unsupported
        {
            let more = match unsupported.len() {
                1 => String::new(),
                n => format!(
                    " (and {} more: {})",
                    n - 1,
                    unsupported[1..]
                        .iter()
                        .map(|c| c.column.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(Error::invalid(format!(
                "source `{name}`: column {}: {}{more}",
                first.column, first.reason
            ))
            .with_hint("pass --skip-unsupported to load the other columns without it, or load a view that casts it"));
        }
        if loadable.is_empty() {
            return Err(Error::invalid(format!(
                "source `{name}`: {} has no column Basin can load",
                table.display()
            )));
        }
        skipped.extend(unsupported);
        chosen.push((table, key, loadable));
    }
    Ok((chosen, skipped))
}

/// Reads each planned table over `readers`, telling `progress`; what each load did, and the
/// change that replaces the Basin table's rows with what was read.
async fn read_tables(
    name: &str,
    planned: Vec<Planned>,
    readers: &mut Vec<PgConnection>,
    progress: Option<&LoadProgress>,
) -> Result<(Vec<TableLoad>, Vec<StagedChange>)> {
    let mut loads = Vec::with_capacity(planned.len());
    let mut changes = Vec::with_capacity(planned.len());
    for plan in planned {
        let key_text = plan.key.to_string();
        if let Some(progress) = progress {
            progress(LoadEvent::Started {
                table: &key_text,
                estimated_rows: (plan.table.estimated_rows >= 0.0)
                    .then_some(plan.table.estimated_rows as u64),
            });
        }
        let schema = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(plan.staged.table.metadata().current_schema())
                .map_err(basin_table::from_iceberg("table schema"))?,
        );
        let read = read::read_table(
            read::ReadPlan {
                source: name,
                table: &plan.table,
                columns: plan.columns.iter().map(|(c, _)| c.name.clone()).collect(),
                kinds: plan.columns.iter().map(|(_, k)| *k).collect(),
                schema,
                key: key_text.clone(),
            },
            readers,
            &plan.staged.table,
            progress,
        )
        .await?;
        tracing::info!(source = name, table = %key_text, rows = read.rows, seconds = read.seconds, "table read");
        if let Some(progress) = progress {
            progress(LoadEvent::Finished {
                table: &key_text,
                rows: read.rows,
                seconds: read.seconds,
            });
        }
        loads.push(TableLoad {
            source_table: plan.table.display(),
            table: key_text,
            created: plan.staged.created,
            rows: read.rows,
            bytes: read.bytes,
            data_files: read.files.len(),
            seconds: read.seconds,
            rows_per_second: per_second(read.rows, read.seconds),
        });
        changes.push(StagedChange {
            key: plan.key,
            staged: plan.staged,
            change: TableChange::Replace(read.files),
        });
    }
    Ok((loads, changes))
}
