//! `basin ingest NAME --follow`: the full load (when the tables hold no position yet), then
//! the slot's changes applied batch by batch until stopped (or, without `--follow`, until
//! caught up with the server's WAL position at the start).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use basin_catalog::Key;
use basin_core::{Error, Result};
use basin_table::Tables;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use super::apply::{Change, Op, Target, Txn, apply, no_key, unix_micros};
use super::pgoutput::{self, Message, Relation};
use super::{CHANGELOG_SUFFIX, Position, slot};
use crate::postgres::connect::{self, PgTable, query_error};
use crate::postgres::types::{self, Decode};
use crate::postgres::{LoadProgress, LoadReport, LoadRequest, PgSource};

/// Without `--follow`, the stream counts as caught up after this long with nothing new.
const IDLE_DONE: Duration = Duration::from_secs(3);

/// What to stream, where, in which batches.
#[derive(Clone)]
pub struct FollowRequest {
    pub source: PgSource,
    pub branch: String,
    pub author: String,
    /// The publication (created by the user) naming the tables to stream.
    pub publication: String,
    /// A batch is committed once it holds this many changes (whole transactions)...
    pub batch_rows: usize,
    /// ...or its first transaction waited this long.
    pub batch_seconds: f64,
    /// The most changes one source transaction may hold (it is kept in memory until it
    /// commits): past it the stream stops with a hint.
    pub max_transaction_changes: usize,
    /// Keep streaming until stopped; else stop once caught up.
    pub follow: bool,
    /// A full load even if the tables hold a position.
    pub full: bool,
    pub skip_unsupported: bool,
    /// Set to `true` to stop after the current batch commits.
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub load_progress: Option<LoadProgress>,
    pub progress: Option<FollowProgress>,
}

/// How streaming goes.
pub enum FollowEvent<'a> {
    /// The full load committed.
    Loaded(&'a LoadReport),
    /// A batch committed.
    Batch(&'a BatchReport),
    /// The server's WAL position and how far behind the tables are (for metrics).
    Lag { lag_bytes: u64, lag_seconds: f64 },
}

pub type FollowProgress = Arc<dyn Fn(FollowEvent<'_>) + Send + Sync>;

/// One committed batch.
#[derive(Clone, Debug, Serialize)]
pub struct BatchReport {
    pub source: String,
    pub commit: String,
    pub transactions: usize,
    pub changes: u64,
    pub tables: usize,
    pub files_rewritten: usize,
    /// The last transaction's commit LSN, recorded in the tables' snapshots.
    pub lsn: String,
    /// From the last transaction's commit at the source to Basin's commit.
    pub lag_seconds: f64,
    /// From the first (oldest) transaction's commit at the source to Basin's commit.
    pub oldest_lag_seconds: f64,
    pub seconds: f64,
}

/// What a `follow` did, when it stopped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FollowReport {
    pub source: String,
    pub slot: String,
    pub full_load: Option<LoadReport>,
    pub batches: u64,
    pub transactions: u64,
    pub changes: u64,
    /// Transactions Postgres sent again that the tables already held (after a restart).
    pub skipped_transactions: u64,
    pub lsn: Option<String>,
}

fn current_key(source: &PgSource, table: &PgTable) -> Result<Key> {
    Key::table(&format!("{}.{}", source.namespace, table.name))
}

fn changelog_key(source: &PgSource, table: &PgTable) -> Result<Key> {
    Key::table(&format!(
        "{}.{}{CHANGELOG_SUFFIX}",
        source.namespace, table.name
    ))
}

/// Checks the server and the tables can be streamed, and finds them.
async fn targets(conn: &mut PgConnection, request: &FollowRequest) -> Result<HashMap<u32, Target>> {
    let source = &request.source;
    let name = source.name.as_str();
    let row = sqlx::query(
        "SELECT current_setting('server_version_num')::int4, current_setting('wal_level')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(query_error(format!(
        "source `{name}`: cannot read the server's settings"
    )))?;
    let version: i32 = row.try_get(0).map_err(query_error("server_version_num"))?;
    let wal_level: String = row.try_get(1).map_err(query_error("wal_level"))?;
    if version < 140000 {
        return Err(Error::invalid(format!(
            "source `{name}`: change data capture needs Postgres 14 or newer (binary logical replication); the server is {}",
            version / 10000
        ))
        .with_hint("use mode = \"snapshot\" for this source"));
    }
    if wal_level != "logical" {
        return Err(Error::invalid(format!(
            "source `{name}`: the server's wal_level is `{wal_level}`, and change data capture needs `logical`"
        ))
        .with_hint("set wal_level = logical in postgresql.conf and restart Postgres (docs/ingest-postgres.md)"));
    }
    let publication = &request.publication;
    let found = connect::source_tables(conn, source).await?;
    let list = found
        .iter()
        .map(PgTable::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    let exists = sqlx::query("SELECT 1 FROM pg_publication WHERE pubname = $1")
        .bind(publication)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error(format!(
            "source `{name}`: cannot read its publication"
        )))?;
    if exists.is_none() {
        return Err(Error::not_found(format!(
            "source `{name}`: publication `{publication}` does not exist"
        ))
        .with_hint(format!(
            "create it at the source: `CREATE PUBLICATION {} FOR TABLE {list};` (or set `publication` in [sources.{name}])",
            connect::sql_ident(publication)
        )));
    }
    let mut targets = HashMap::new();
    for table in found {
        let listed = sqlx::query(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
        )
        .bind(publication)
        .bind(&table.schema)
        .bind(&table.name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error(format!("source `{name}`: cannot read its publication")))?;
        if listed.is_none() {
            return Err(Error::invalid(format!(
                "source `{name}`: publication `{publication}` does not include {}",
                table.display()
            ))
            .with_hint(format!(
                "`ALTER PUBLICATION {} ADD TABLE {};` at the source",
                connect::sql_ident(publication),
                table.sql()
            )));
        }
        let row = sqlx::query(
            "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
             FROM pg_class c WHERE c.oid = $1",
        )
        .bind(table.oid)
        .fetch_one(&mut *conn)
        .await
        .map_err(query_error(format!("source `{name}`: cannot read {}", table.display())))?;
        let identity: String = row.try_get(0).map_err(query_error("relreplident"))?;
        let primary: bool = row.try_get(1).map_err(query_error("indisprimary"))?;
        if identity == "n" || (identity == "d" && !primary) {
            return Err(no_key(name, &table.display()));
        }
        let decodes = decodes(conn, name, &table).await?;
        targets.insert(
            table.oid.0,
            Target {
                current: current_key(source, &table)?,
                changelog: changelog_key(source, &table)?,
                table,
                decodes,
            },
        );
    }
    Ok(targets)
}

async fn decodes(
    conn: &mut PgConnection,
    source: &str,
    table: &PgTable,
) -> Result<HashMap<String, Decode>> {
    Ok(connect::columns(conn, source, table)
        .await?
        .into_iter()
        .filter_map(|c| types::decode_of(&c).ok().map(|d| (c.name, d)))
        .collect())
}

/// A Relation message for a streamed table: its columns' types are looked up and checked
/// against the Basin table. An added column is fine (the next batch adds
/// it); a dropped or retyped one stops the stream.
async fn check_relation(
    tables: &Tables,
    conn: &mut PgConnection,
    request: &FollowRequest,
    target: &mut Target,
    relation: &Relation,
) -> Result<()> {
    let name = request.source.name.as_str();
    let display = target.table.display();
    // The columns as the stream sends them from now on (the catalog may be further on).
    let mut decodes = HashMap::new();
    for column in &relation.columns {
        let described =
            connect::column_of_type(conn, name, &column.name, column.type_oid, column.type_mod)
                .await?;
        if let Ok(decode) = types::decode_of(&described) {
            decodes.insert(column.name.clone(), decode);
        }
    }
    if !relation.columns.iter().any(|c| c.key) {
        return Err(no_key(name, &display));
    }
    let at = tables.catalog().resolve(&request.branch).await?;
    let table = tables.load(&at, &target.current).await?;
    let stop = |what: String| {
        Error::invalid(format!("source `{name}`: {display}.{what}")).with_hint(format!(
            "Basin does not drop or retype columns on its own: drop `{}` and `{}` (`basin table rm`) and run `basin ingest {name} --full` to start over",
            target.current, target.changelog
        ))
    };
    for field in table.metadata().current_schema().as_struct().fields() {
        let Some(column) = relation.columns.iter().find(|c| c.name == field.name) else {
            return Err(stop(format!(
                "{} was dropped or renamed at the source, and `{}` still has it",
                field.name, target.current
            )));
        };
        match decodes.get(&column.name) {
            Some(decode) if types::same_type(&field.field_type, &decode.iceberg_type(0)) => {}
            _ => {
                return Err(stop(format!(
                    "{} changed its type at the source; `{}` stores it as {}",
                    column.name, target.current, field.field_type
                )));
            }
        }
    }
    for column in &relation.columns {
        if !decodes.contains_key(&column.name) && !request.skip_unsupported {
            return Err(Error::invalid(format!(
                "source `{name}`: column {display}.{} was added with a type Basin cannot store",
                column.name
            ))
            .with_hint("pass --skip-unsupported to stream the other columns without it"));
        }
    }
    // Only now: a stop above leaves the batch before this relation to commit as it was.
    target.decodes.extend(decodes);
    Ok(())
}

/// Streams `request`'s source into its tables: see the module's docs.
pub async fn follow(tables: &Tables, request: FollowRequest) -> Result<FollowReport> {
    let source = &request.source;
    let name = source.name.clone();
    let slot_name = slot::slot_name(&name);
    let catalog = tables.catalog();
    catalog.resolve(&request.branch).await?.writable_branch()?;
    let mut conn = connect::connect(source).await?;
    let mut targets = targets(&mut conn, &request).await?;
    let keys: Vec<Key> = targets
        .values()
        .flat_map(|t| [t.current.clone(), t.changelog.clone()])
        .collect();
    let mut report = FollowReport {
        source: name.clone(),
        slot: slot_name.clone(),
        ..Default::default()
    };

    // Resume from the tables' position if the slot that position is on still exists.
    let at = catalog.resolve(&request.branch).await?;
    let stored = super::stored_position(tables, &at, &name, &keys).await?;
    let slot_state = slot::inactive_slot_state(&mut conn, &name, &slot_name).await?;
    let resumable = match (&stored.position, &slot_state) {
        (Some(p), Some(_)) if p.slot == slot_name && !request.full => Some(p.clone()),
        _ => None,
    };
    let mut position = match resumable {
        Some(p) => p,
        None => {
            if let (Some(p), None) = (&stored.position, &slot_state) {
                tracing::warn!(source = %name, slot = %p.slot, "the replication slot is gone: a full load starts over");
            }
            let load = crate::postgres::load(
                tables,
                LoadRequest {
                    source: source.clone(),
                    branch: request.branch.clone(),
                    skip_unsupported: request.skip_unsupported,
                    author: request.author.clone(),
                    slot: Some(slot_name.clone()),
                },
                request.load_progress.clone(),
            )
            .await?;
            if let Some(progress) = &request.progress {
                progress(FollowEvent::Loaded(&load));
            }
            let at = catalog.resolve(&request.branch).await?;
            let stored = super::stored_position(tables, &at, &name, &keys).await?;
            report.full_load = Some(load);
            stored.position.ok_or_else(|| {
                Error::internal(format!(
                    "source `{name}`: the full load recorded no position"
                ))
            })?
        }
    };
    report.lsn = Some(slot::format_lsn(position.lsn));
    if *request.stop.borrow() {
        return Ok(report);
    }

    let target_lsn: String = sqlx::query("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(query_error(format!(
            "source `{name}`: cannot read the WAL position"
        )))?;
    let target_lsn = slot::parse_lsn(&target_lsn).unwrap_or(0);

    let mut config = slot::replication_config(source, &slot_name, &request.publication)?;
    config.ack_lsn = Some(Lsn(position.lsn));
    let mut client = ReplicationClient::connect_gated(config)
        .await
        .map_err(stream_error(&name))?;
    let system = client
        .identify_system()
        .await
        .map_err(stream_error(&name))?;
    if !position.system_id.is_empty() && system.system_id != position.system_id {
        return Err(Error::invalid(format!(
            "source `{name}`: the tables were loaded from server {} but the url now reaches server {}",
            position.system_id, system.system_id
        ))
        .with_hint(format!("run `basin ingest {name} --full` to load from this server")));
    }
    client.start().await.map_err(stream_error(&name))?;
    client.wait_started().await.map_err(stream_error(&name))?;
    tracing::info!(source = %name, slot = %slot_name, lsn = %slot::format_lsn(position.lsn), "streaming changes");

    let mut relations: HashMap<u32, Arc<Relation>> = HashMap::new();
    let mut open: Option<Txn> = None;
    let mut batch: Vec<Txn> = Vec::new();
    let mut batch_changes = 0usize;
    let mut batch_started = Instant::now();
    let mut last_event = Instant::now();
    let mut seen_lsn = position.lsn;
    let mut last_ack: Option<Instant> = None;
    let mut stop = request.stop.clone();
    let batch_wait = Duration::from_secs_f64(request.batch_seconds.max(0.0));
    loop {
        let flush_due = !batch.is_empty()
            && (batch_changes >= request.batch_rows || batch_started.elapsed() >= batch_wait);
        let caught_up = !request.follow
            && open.is_none()
            && (seen_lsn >= target_lsn || last_event.elapsed() >= IDLE_DONE);
        let stopping = *stop.borrow();
        if flush_due || ((caught_up || stopping) && !batch.is_empty()) {
            let started = Instant::now();
            let txns = std::mem::take(&mut batch);
            batch_changes = 0;
            let last = txns.last().expect("a batch");
            let next = Position {
                lsn: last.end_lsn,
                ..position.clone()
            };
            let applied = apply(
                tables,
                &name,
                &request.branch,
                &request.author,
                &targets,
                &txns,
                &next,
            )
            .await?;
            // Only now may Postgres forget these transactions.
            client.update_applied_lsn(Lsn(next.lsn));
            last_ack = Some(Instant::now());
            position = next;
            report.batches += 1;
            report.transactions += txns.len() as u64;
            report.changes += applied.changes;
            report.lsn = Some(slot::format_lsn(position.lsn));
            let now = chrono::Utc::now().timestamp_micros();
            let lag = (now - last.commit_us) as f64 / 1e6;
            let oldest = (now - txns[0].commit_us) as f64 / 1e6;
            let batch_report = BatchReport {
                source: name.clone(),
                commit: applied.commit.unwrap_or_default(),
                transactions: txns.len(),
                changes: applied.changes,
                tables: applied.tables,
                files_rewritten: applied.files_rewritten,
                lsn: slot::format_lsn(position.lsn),
                lag_seconds: lag.max(0.0),
                oldest_lag_seconds: oldest.max(0.0),
                seconds: started.elapsed().as_secs_f64(),
            };
            tracing::info!(source = %name, lsn = %batch_report.lsn, transactions = batch_report.transactions, changes = batch_report.changes, "batch committed");
            if let Some(progress) = &request.progress {
                progress(FollowEvent::Batch(&batch_report));
            }
            continue;
        }
        if caught_up || stopping {
            break;
        }
        let wait = if batch.is_empty() {
            Duration::from_secs(1)
        } else {
            batch_wait
                .saturating_sub(batch_started.elapsed())
                .max(Duration::from_millis(1))
        };
        let event = tokio::select! {
            event = client.recv() => event.map_err(stream_error(&name))?,
            _ = tokio::time::sleep(wait) => continue,
            _ = stop.changed() => continue,
        };
        let Some(event) = event else {
            return Err(Error::io(format!(
                "source `{name}`: the server ended the replication stream"
            ))
            .with_hint(
                "check the server's log; Basin resumes from the tables' position when run again",
            ));
        };
        last_event = Instant::now();
        match event {
            ReplicationEvent::Begin {
                commit_time_micros, ..
            } => {
                open = Some(Txn {
                    end_lsn: 0,
                    commit_us: unix_micros(commit_time_micros),
                    changes: Vec::new(),
                });
            }
            ReplicationEvent::XLogData { data, .. } => {
                let message = pgoutput::parse(&data)
                    .map_err(|e| Error::io(format!("source `{name}`: {e}")))?;
                if open.is_none() {
                    continue;
                }
                let mut rows: Vec<(Op, u32, Option<pgoutput::Tuple>, Option<pgoutput::Tuple>)> =
                    Vec::new();
                match message {
                    Message::Relation(relation) => {
                        let changed = relations
                            .get(&relation.id)
                            .is_none_or(|r| r.columns != relation.columns);
                        if changed && let Some(target) = targets.get_mut(&relation.id) {
                            let checked =
                                check_relation(tables, &mut conn, &request, target, &relation)
                                    .await;
                            if let Err(e) = checked {
                                // What was committed before the change still lands.
                                if let Some(last) = batch.last() {
                                    let next = Position {
                                        lsn: last.end_lsn,
                                        ..position.clone()
                                    };
                                    apply(
                                        tables,
                                        &name,
                                        &request.branch,
                                        &request.author,
                                        &targets,
                                        &batch,
                                        &next,
                                    )
                                    .await?;
                                    client.update_applied_lsn(Lsn(next.lsn));
                                }
                                return Err(e);
                            }
                        }
                        relations.insert(relation.id, Arc::new(relation));
                    }
                    Message::Insert { relation, new } => {
                        rows.push((Op::Insert, relation, Some(new), None))
                    }
                    Message::Update { relation, old, new } => {
                        rows.push((Op::Update, relation, Some(new), old))
                    }
                    Message::Delete { relation, old } => {
                        rows.push((Op::Delete, relation, None, Some(old)))
                    }
                    Message::Truncate { relations: ids } => {
                        rows.extend(ids.into_iter().map(|id| (Op::Truncate, id, None, None)))
                    }
                    Message::Other(_) => {}
                }
                if let Some(txn) = open.as_mut() {
                    for (op, id, new, old) in rows {
                        if let Some(relation) = relations.get(&id) {
                            txn.changes.push(Change {
                                op,
                                relation: relation.clone(),
                                new,
                                old,
                            });
                        }
                    }
                    if txn.changes.len() > request.max_transaction_changes {
                        // Nothing of it is acknowledged: the slot keeps it for the next run.
                        return Err(too_big(&name, request.max_transaction_changes));
                    }
                }
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                seen_lsn = seen_lsn.max(end_lsn.0);
                let Some(mut txn) = open.take() else {
                    continue;
                };
                txn.end_lsn = end_lsn.0;
                if txn.end_lsn <= position.lsn
                    || batch.last().is_some_and(|t| txn.end_lsn <= t.end_lsn)
                {
                    report.skipped_transactions += 1;
                } else if !txn.changes.is_empty() {
                    if batch.is_empty() {
                        batch_started = Instant::now();
                    }
                    batch_changes += txn.changes.len();
                    batch.push(txn);
                } else if batch.is_empty() {
                    client.update_applied_lsn(end_lsn);
                    last_ack = Some(Instant::now());
                }
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                seen_lsn = seen_lsn.max(wal_end.0);
                // Nothing held back: every change before `wal_end` is in the tables.
                if open.is_none() && batch.is_empty() && wal_end.0 > position.lsn {
                    client.update_applied_lsn(wal_end);
                }
                if let Some(progress) = &request.progress {
                    let behind = wal_end.0.saturating_sub(position.lsn);
                    progress(FollowEvent::Lag {
                        lag_bytes: if batch.is_empty() && open.is_none() {
                            0
                        } else {
                            behind
                        },
                        lag_seconds: batch
                            .first()
                            .map(|t| {
                                (chrono::Utc::now().timestamp_micros() - t.commit_us) as f64 / 1e6
                            })
                            .unwrap_or(0.0),
                    });
                }
            }
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
    }
    // The session sends the acknowledged LSN every STATUS_INTERVAL and not when it stops: let
    // the last one reach the server, so the slot's lag reads 0 once caught up (a restart
    // would skip those transactions anyway).
    if let Some(acked) = last_ack {
        let wait = slot::STATUS_INTERVAL + Duration::from_millis(100);
        tokio::time::sleep(wait.saturating_sub(acked.elapsed())).await;
    }
    let _ = client.shutdown().await;
    let _ = conn.close().await;
    Ok(report)
}

fn stream_error(source: &str) -> impl Fn(pgwire_replication::PgWireError) -> Error + '_ {
    move |e| {
        let text = e.to_string();
        let hint = if text.contains("publication") {
            "create the publication at the source (docs/ingest-postgres.md gives the SQL)"
        } else if text.contains("is active for PID") {
            "another `basin ingest --follow` or `basin serve` streams this source; stop it first"
        } else if text.contains("replication") {
            "the source's user needs REPLICATION (`ALTER ROLE basin REPLICATION;`) and a `host replication` line in pg_hba.conf"
        } else {
            "Basin resumes from the tables' position when run again"
        };
        Error::io(format!("source `{source}`: replication stream: {text}")).with_hint(hint)
    }
}

/// A source transaction holds more changes than `[sources.NAME] max_transaction_changes`.
fn too_big(source: &str, limit: usize) -> Error {
    Error::invalid(format!(
        "source `{source}`: a transaction holds more than {limit} changes \
         (`max_transaction_changes`); Basin keeps a source transaction in memory until it commits"
    ))
    .with_hint(format!(
        "raise `max_transaction_changes` in [sources.{source}] of basin.toml if this host has \
         the memory (about the rows' size each), or commit smaller transactions at the source; \
         the stream resumes from the same transaction"
    ))
}
