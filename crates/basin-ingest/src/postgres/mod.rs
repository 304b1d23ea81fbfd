//! A full load of Postgres tables into Iceberg tables, from one consistent point in time.
//!
//! One connection opens a `REPEATABLE READ` transaction and exports its snapshot
//! (`pg_export_snapshot()`); `readers` more connections import it (`SET TRANSACTION
//! SNAPSHOT`), so every table is read as of the same instant. Each table is read by binary
//! `COPY` over ctid ranges in parallel, decoded straight into Arrow and written as Parquet;
//! then every table is replaced in one catalog commit: all or nothing.
//!
//! A snapshot load exports the snapshot from a plain transaction. A change-data-capture
//! source's first load creates a logical replication slot with an exported snapshot instead,
//! so the changes streamed from the slot (see [`cdc`]) start exactly where the load read, and
//! the load's commit records the slot's consistent point.

pub mod cdc;
mod connect;
mod copy_decode;
mod numeric;
mod read;
mod types;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use basin_catalog::{CommitRequest, Content, Key};
use basin_core::{Error, Result};
use basin_table::{StagedChange, TableChange, Tables};
use iceberg::spec::{NestedField, Schema};
use serde::{Deserialize, Serialize};
use sqlx::Connection;

use connect::PgTable;
use types::{Decode, PgColumn};

/// A Postgres source, resolved from `[sources.NAME]` (the password read from its variable).
#[derive(Clone)]
pub struct PgSource {
    /// The source's name in basin.toml, for messages.
    pub name: String,
    /// `postgres://USER@HOST:PORT/DATABASE`, without a password.
    pub url: String,
    pub password: Option<String>,
    /// The variable the password came from, for hints.
    pub password_env: Option<String>,
    /// `schema.table` (or `table`, in `public`); empty with `schema`.
    pub tables: Vec<String>,
    /// Every table of this schema.
    pub schema: Option<String>,
    /// The Basin namespace the tables go to, under their source names.
    pub namespace: String,
    /// Connections reading in parallel (ctid ranges of each table).
    pub readers: usize,
}

impl std::fmt::Debug for PgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSource")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tables", &self.tables)
            .field("schema", &self.schema)
            .field("namespace", &self.namespace)
            .field("readers", &self.readers)
            .finish()
    }
}

/// What to load, where.
#[derive(Clone, Debug)]
pub struct LoadRequest {
    pub source: PgSource,
    pub branch: String,
    /// Leave out columns whose type Basin cannot store (reported), instead of failing.
    pub skip_unsupported: bool,
    pub author: String,
    /// Change data capture: create this replication slot and read from its exported snapshot;
    /// the commit records the slot's consistent point (see [`cdc`]).
    pub slot: Option<String>,
}

/// How the load goes, table by table.
pub enum LoadEvent<'a> {
    Started {
        table: &'a str,
        estimated_rows: Option<u64>,
    },
    Rows {
        table: &'a str,
        rows: u64,
    },
    Finished {
        table: &'a str,
        rows: u64,
        seconds: f64,
    },
}

pub type LoadProgress = Arc<dyn Fn(LoadEvent<'_>) + Send + Sync>;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadReport {
    pub source: String,
    pub branch: String,
    pub commit: String,
    pub tables: Vec<TableLoad>,
    pub rows: u64,
    /// Bytes of binary COPY data read from the source.
    pub bytes: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    /// Columns left out with `--skip-unsupported`.
    pub skipped_columns: Vec<SkippedColumn>,
    /// The replication slot's consistent point the load read at (change data capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableLoad {
    /// `schema.table` at the source.
    pub source_table: String,
    /// `namespace.table` in Basin.
    pub table: String,
    pub created: bool,
    pub rows: u64,
    pub bytes: u64,
    pub data_files: usize,
    pub seconds: f64,
    pub rows_per_second: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SkippedColumn {
    /// `schema.table.column` at the source.
    pub column: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub reason: String,
}

/// One source table, ready to read: its loadable columns and the staged Basin table.
struct Planned {
    table: PgTable,
    key: Key,
    columns: Vec<(PgColumn, Decode)>,
    staged: basin_table::Staged,
}

fn per_second(rows: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        rows as f64 / seconds
    } else {
        0.0
    }
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
    // With a slot, its session exports the snapshot and must run nothing else until every
    // reader has imported it.
    let created = match &request.slot {
        Some(slot) => {
            cdc::slot::drop_slot(&mut coordinator, name, slot).await?;
            Some(cdc::slot::create_slot(source, slot).await?)
        }
        None => None,
    };
    let snapshot = match &created {
        Some(created) => {
            connect::import_snapshot(&mut coordinator, &created.snapshot, name).await?;
            created.snapshot.clone()
        }
        None => connect::export_snapshot(&mut coordinator, name).await?,
    };
    let found = connect::source_tables(&mut coordinator, source).await?;
    // Every table and column is checked before anything is written.
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
        let columns = connect::columns(&mut coordinator, name, &table).await?;
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
    let mut planned = Vec::with_capacity(chosen.len());
    for (table, key, mut columns) in chosen {
        let staged = stage(tables, &at, &key, &table, &mut columns).await?;
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
        cdc::Position {
            lsn: created.consistent_point,
            slot: request.slot.clone().unwrap_or_default(),
            system_id: created.system_id,
        }
    });
    tracing::info!(source = name, %snapshot, tables = planned.len(), readers = readers.len(), "reading from one snapshot");

    let mut loads = Vec::with_capacity(planned.len());
    let mut changes = Vec::with_capacity(planned.len());
    for plan in planned {
        let key_text = plan.key.to_string();
        if let Some(progress) = &progress {
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
            &mut readers,
            &plan.staged.table,
            progress.as_ref(),
        )
        .await?;
        tracing::info!(source = name, table = %key_text, rows = read.rows, seconds = read.seconds, "table read");
        if let Some(progress) = &progress {
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
    for conn in readers {
        let _ = conn.close().await;
    }

    let rows: u64 = loads.iter().map(|t| t.rows).sum();
    let message = format!(
        "ingest {name}: {} table{}, {rows} rows",
        loads.len(),
        if loads.len() == 1 { "" } else { "s" }
    );
    let mut commit_request = CommitRequest::new(&branch, at.commit.clone(), message)
        .with_author(&request.author)
        .with_property("basin.source", name);
    if let Some(position) = &position {
        commit_request = position.record(commit_request);
    }
    let commit = tables.commit_changes(changes, commit_request).await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(LoadReport {
        source: name.to_string(),
        branch,
        commit: commit.id.to_string(),
        bytes: loads.iter().map(|t| t.bytes).sum(),
        rows,
        tables: loads,
        seconds,
        rows_per_second: per_second(rows, seconds),
        skipped_columns: skipped,
        lsn: position.map(|p| cdc::slot::format_lsn(p.lsn)),
    })
}

/// The Basin table a source table's rows go to: created, or the existing one (with columns
/// added at the source added to it). `columns` is put in the table's column order, the order
/// the COPY reads them in. A column dropped or retyped at the source stops the load.
pub(crate) async fn stage(
    tables: &Tables,
    at: &basin_catalog::Resolved,
    key: &Key,
    table: &PgTable,
    columns: &mut Vec<(PgColumn, Decode)>,
) -> Result<basin_table::Staged> {
    let existing = match tables.catalog().content(at, key).await? {
        Some(Content::Table { metadata_location }) => {
            Some(tables.load_from(key, &metadata_location).await?)
        }
        Some(Content::Namespace { .. }) => {
            return Err(Error::invalid(format!(
                "`{key}` is a namespace, not a table"
            )));
        }
        None => None,
    };
    let Some(existing) = existing else {
        let fields = columns
            .iter()
            .enumerate()
            .map(|(i, (c, kind))| {
                // Columns are 1..=n; a list's element takes an id after them.
                let element_id = columns.len() as i32 + i as i32 + 1;
                Arc::new(NestedField::optional(
                    i as i32 + 1,
                    &c.name,
                    kind.iceberg_type(element_id),
                ))
            })
            .collect::<Vec<_>>();
        let schema =
            Schema::builder()
                .with_fields(fields)
                .build()
                .map_err(basin_table::from_iceberg(format!(
                    "cannot make a schema for `{key}`"
                )))?;
        return tables
            .stage_create(
                key,
                schema,
                iceberg::spec::UnboundPartitionSpec::builder().build(),
            )
            .await;
    };
    let schema = existing.metadata().current_schema().clone();
    let mut ordered = Vec::with_capacity(columns.len());
    for field in schema.as_struct().fields() {
        let Some(i) = columns.iter().position(|(c, _)| c.name == field.name) else {
            return Err(Error::invalid(format!(
                "`{key}` has a column `{}` that {} no longer has (dropped, renamed, or left out as unsupported)",
                field.name,
                table.display()
            ))
            .with_hint(format!(
                "Basin does not drop columns on its own: drop the table (`basin table rm {key}`) and ingest again to start over"
            )));
        };
        let (column, kind) = columns.remove(i);
        if !types::same_type(&field.field_type, &kind.iceberg_type(0)) {
            return Err(Error::invalid(format!(
                "{}.{} is {} now, but `{key}` stores it as {}",
                table.display(),
                column.name,
                column.display,
                field.field_type
            ))
            .with_hint(format!(
                "Basin does not retype columns on its own: drop the table (`basin table rm {key}`) and ingest again to start over"
            )));
        }
        ordered.push((column, kind));
    }
    // What is left was added at the source: added to the table, at its end.
    let added: Vec<(String, iceberg::spec::Type)> = columns
        .iter()
        .map(|(c, kind)| (c.name.clone(), kind.iceberg_type(0)))
        .collect();
    ordered.append(columns);
    *columns = ordered;
    tables
        .stage_add_columns(Tables::stage_existing(existing), added)
        .await
}
