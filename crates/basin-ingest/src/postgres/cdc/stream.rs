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
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use super::apply::apply;
use super::changes::{Change, Op, Target, Txn, unix_micros};
use super::pgoutput::{self, Message, Relation};
use super::position::{Position, stored_position};
use super::slot;
use super::targets::{RelationCheck, check_relation, targets};
use crate::database::follow::{
    Applied, BatchReport, Batching, FollowEvent, FollowReport, IDLE_DONE, Step, StreamOptions,
    too_big,
};
use crate::postgres::connect::{self, query_error};
use crate::postgres::load::{self, LoadRequest};
use crate::postgres::source::PgSource;

/// What to stream, where, in which batches.
#[derive(Clone)]
pub struct FollowRequest {
    pub source: PgSource,
    /// The publication (created by the user) naming the tables to stream.
    pub publication: String,
    pub stream: StreamOptions,
}

/// Streams `request`'s source into its tables: see the module's docs.
pub async fn follow(tables: &Tables, request: FollowRequest) -> Result<FollowReport> {
    let source = &request.source;
    let name = source.name.clone();
    let slot_name = slot::slot_name(&name);
    tables
        .catalog()
        .resolve(&request.stream.branch)
        .await?
        .writable_branch()?;
    let mut conn = connect::connect(source).await?;
    let targets = targets(&mut conn, source, &request.publication).await?;
    let keys: Vec<Key> = targets
        .values()
        .flat_map(|t| [t.current.clone(), t.changelog.clone()])
        .collect();
    let mut report = FollowReport {
        source: name.clone(),
        slot: slot_name.clone(),
        ..Default::default()
    };
    let position = start_position(tables, &request, &mut conn, &keys, &mut report).await?;
    report.lsn = Some(slot::format_lsn(position.lsn));
    if *request.stream.stop.borrow() {
        return Ok(report);
    }
    let target_lsn = wal_position(&mut conn, &name).await?;
    let client = start_replication(source, &slot_name, &request.publication, &position).await?;
    tracing::info!(source = %name, slot = %slot_name, lsn = %slot::format_lsn(position.lsn), "streaming changes");
    let seen_lsn = position.lsn;
    let mut follower = Follower {
        tables,
        request: &request,
        name,
        conn,
        client,
        targets,
        position,
        report,
        relations: HashMap::new(),
        open: None,
        batch: Vec::new(),
        batching: Batching::new(request.stream.batch_rows, request.stream.batch_seconds),
        last_event: Instant::now(),
        seen_lsn,
        last_ack: None,
    };
    follower.stream(target_lsn).await?;
    Ok(follower.finish().await)
}

/// Where streaming starts: the tables' position, if the slot it is on still exists (and no
/// full load is asked for); else the position a full load from a new slot records.
async fn start_position(
    tables: &Tables,
    request: &FollowRequest,
    conn: &mut PgConnection,
    keys: &[Key],
    report: &mut FollowReport,
) -> Result<Position> {
    let name = request.source.name.as_str();
    let slot_name = slot::slot_name(name);
    let catalog = tables.catalog();
    let at = catalog.resolve(&request.stream.branch).await?;
    let stored = stored_position(tables, &at, name, keys).await?;
    let slot_state = slot::inactive_slot_state(conn, name, &slot_name).await?;
    let resumable = match (&stored.position, &slot_state) {
        (Some(p), Some(_)) if p.slot == slot_name && !request.stream.full => Some(p.clone()),
        _ => None,
    };
    if let Some(p) = resumable {
        return Ok(p);
    }
    if let (Some(p), None) = (&stored.position, &slot_state) {
        tracing::warn!(source = %name, slot = %p.slot, "the replication slot is gone: a full load starts over");
    }
    let load = load::load(
        tables,
        LoadRequest {
            source: request.source.clone(),
            branch: request.stream.branch.clone(),
            skip_unsupported: request.stream.skip_unsupported,
            slot: Some(slot_name),
        },
        request.stream.load_progress.clone(),
    )
    .await?;
    if let Some(progress) = &request.stream.progress {
        progress(FollowEvent::Loaded(&load));
    }
    let at = catalog.resolve(&request.stream.branch).await?;
    let stored = stored_position(tables, &at, name, keys).await?;
    report.full_load = Some(load);
    stored.position.ok_or_else(|| {
        Error::internal(format!(
            "source `{name}`: the full load recorded no position"
        ))
    })
}

/// The server's WAL position now: without `--follow`, the stream is caught up there.
async fn wal_position(conn: &mut PgConnection, name: &str) -> Result<u64> {
    let lsn: String = sqlx::query("SELECT pg_current_wal_lsn()::text")
        .fetch_one(conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(query_error(format!(
            "source `{name}`: cannot read the WAL position"
        )))?;
    Ok(slot::parse_lsn(&lsn).unwrap_or(0))
}

/// Starts the slot's replication stream after `position` (acknowledged as applied), on the
/// server the tables were loaded from.
async fn start_replication(
    source: &PgSource,
    slot_name: &str,
    publication: &str,
    position: &Position,
) -> Result<ReplicationClient> {
    let name = source.name.as_str();
    let mut config = slot::replication_config(source, slot_name, publication)?;
    config.ack_lsn = Some(Lsn(position.lsn));
    let mut client = ReplicationClient::connect_gated(config)
        .await
        .map_err(stream_error(name))?;
    let system = client.identify_system().await.map_err(stream_error(name))?;
    if !position.system_id.is_empty() && system.system_id != position.system_id {
        return Err(Error::invalid(format!(
            "source `{name}`: the tables were loaded from server {} but the url now reaches server {}",
            position.system_id, system.system_id
        ))
        .with_hint(format!("run `basin ingest {name} --full` to load from this server")));
    }
    client.start().await.map_err(stream_error(name))?;
    client.wait_started().await.map_err(stream_error(name))?;
    Ok(client)
}

/// A stream under way: the transaction being received, the whole ones waiting for their
/// batch's commit, and how far the tables and the server are.
struct Follower<'a> {
    tables: &'a Tables,
    request: &'a FollowRequest,
    name: String,
    conn: PgConnection,
    client: ReplicationClient,
    targets: HashMap<u32, Target>,
    /// What the tables hold: the last batch's position.
    position: Position,
    report: FollowReport,
    relations: HashMap<u32, Arc<Relation>>,
    /// The source transaction being received.
    open: Option<Txn>,
    /// Whole transactions received and not committed yet, in commit order.
    batch: Vec<Txn>,
    batching: Batching,
    last_event: Instant,
    /// The furthest LSN the server has sent.
    seen_lsn: u64,
    last_ack: Option<Instant>,
}

impl Follower<'_> {
    /// Receives and commits batches until stopped or (without `--follow`) caught up with
    /// `target_lsn`.
    async fn stream(&mut self, target_lsn: u64) -> Result<()> {
        let request = self.request;
        let mut stop = request.stream.stop.clone();
        loop {
            let caught_up = !request.stream.follow
                && self.open.is_none()
                && (self.seen_lsn >= target_lsn || self.last_event.elapsed() >= IDLE_DONE);
            let stopping = *stop.borrow();
            let wait = match self.batching.step(self.batch.len(), caught_up, stopping) {
                Step::Commit => {
                    self.commit_batch().await?;
                    continue;
                }
                Step::Done => return Ok(()),
                Step::Receive(wait) => wait,
            };
            let event = tokio::select! {
                event = self.client.recv() => event,
                _ = tokio::time::sleep(wait) => continue,
                _ = stop.changed() => continue,
            };
            let Some(event) = event.map_err(stream_error(&self.name))? else {
                return Err(Error::io(format!(
                    "source `{}`: the server ended the replication stream",
                    self.name
                ))
                .with_hint(
                    "check the server's log; Basin resumes from the tables' position when run again",
                ));
            };
            self.last_event = Instant::now();
            self.receive(event).await?;
        }
    }

    /// Applies `txns` to the tables in one commit recording `next`.
    async fn apply(&self, txns: &[Txn], next: &Position) -> Result<Applied> {
        apply(
            self.tables,
            &self.name,
            &self.request.stream.branch,
            &self.targets,
            txns,
            next,
        )
        .await
    }

    /// Commits the batch, then acknowledges it: only now may Postgres forget it.
    async fn commit_batch(&mut self) -> Result<()> {
        let started = Instant::now();
        let txns = std::mem::take(&mut self.batch);
        self.batching.clear();
        let last = txns.last().expect("a batch");
        let next = Position {
            lsn: last.end_lsn,
            ..self.position.clone()
        };
        let applied = self.apply(&txns, &next).await?;
        // Only now may Postgres forget these transactions.
        self.client.update_applied_lsn(Lsn(next.lsn));
        self.last_ack = Some(Instant::now());
        self.position = next;
        let report = &mut self.report;
        report.batches += 1;
        report.transactions += txns.len() as u64;
        report.changes += applied.changes;
        report.lsn = Some(slot::format_lsn(self.position.lsn));
        let now = chrono::Utc::now().timestamp_micros();
        let lag = (now - last.commit_us) as f64 / 1e6;
        let oldest = (now - txns[0].commit_us) as f64 / 1e6;
        let batch_report = BatchReport {
            source: self.name.clone(),
            commit: applied.commit.unwrap_or_default(),
            transactions: txns.len(),
            changes: applied.changes,
            tables: applied.tables,
            files_rewritten: applied.files_rewritten,
            lsn: slot::format_lsn(self.position.lsn),
            lag_seconds: lag.max(0.0),
            oldest_lag_seconds: oldest.max(0.0),
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(source = %self.name, lsn = %batch_report.lsn, transactions = batch_report.transactions, changes = batch_report.changes, "batch committed");
        if let Some(progress) = &self.request.stream.progress {
            progress(FollowEvent::Batch(&batch_report));
        }
        Ok(())
    }

    async fn receive(&mut self, event: ReplicationEvent) -> Result<()> {
        match event {
            ReplicationEvent::Begin {
                commit_time_micros, ..
            } => {
                self.open = Some(Txn {
                    end_lsn: 0,
                    commit_us: unix_micros(commit_time_micros),
                    changes: Vec::new(),
                });
            }
            ReplicationEvent::XLogData { data, .. } => {
                let message = pgoutput::parse(&data)
                    .map_err(|e| Error::io(format!("source `{}`: {e}", self.name)))?;
                if self.open.is_some() {
                    self.message(message).await?;
                }
            }
            ReplicationEvent::Commit { end_lsn, .. } => self.end_transaction(end_lsn),
            ReplicationEvent::KeepAlive { wal_end, .. } => self.keep_alive(wal_end),
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    /// One message of the open transaction: a relation (checked when new or changed), or
    /// row changes added to the transaction.
    async fn message(&mut self, message: Message) -> Result<()> {
        let mut rows: Vec<(Op, u32, Option<pgoutput::Tuple>, Option<pgoutput::Tuple>)> = Vec::new();
        match message {
            Message::Relation(relation) => self.relation(relation).await?,
            Message::Insert { relation, new } => rows.push((Op::Insert, relation, Some(new), None)),
            Message::Update { relation, old, new } => {
                rows.push((Op::Update, relation, Some(new), old))
            }
            Message::Delete { relation, old } => rows.push((Op::Delete, relation, None, Some(old))),
            Message::Truncate { relations: ids } => {
                rows.extend(ids.into_iter().map(|id| (Op::Truncate, id, None, None)))
            }
            Message::Other(_) => {}
        }
        if let Some(txn) = self.open.as_mut() {
            for (op, id, new, old) in rows {
                if let Some(relation) = self.relations.get(&id) {
                    txn.changes.push(Change {
                        op,
                        relation: relation.clone(),
                        new,
                        old,
                    });
                }
            }
            if txn.changes.len() > self.request.stream.max_transaction_changes {
                // Nothing of it is acknowledged: the slot keeps it for the next run.
                return Err(too_big(
                    &self.name,
                    self.request.stream.max_transaction_changes,
                ));
            }
        }
        Ok(())
    }

    /// A Relation message: checked against its Basin table when new or changed. A stop
    /// commits the batch received before it first.
    async fn relation(&mut self, relation: Relation) -> Result<()> {
        let changed = self
            .relations
            .get(&relation.id)
            .is_none_or(|r| r.columns != relation.columns);
        if changed && let Some(target) = self.targets.get_mut(&relation.id) {
            let check = RelationCheck {
                source: &self.name,
                branch: &self.request.stream.branch,
                skip_unsupported: self.request.stream.skip_unsupported,
            };
            let checked =
                check_relation(self.tables, &mut self.conn, &check, target, &relation).await;
            if let Err(e) = checked {
                // What was committed before the change still lands.
                if let Some(last) = self.batch.last() {
                    let next = Position {
                        lsn: last.end_lsn,
                        ..self.position.clone()
                    };
                    self.apply(&self.batch, &next).await?;
                    self.client.update_applied_lsn(Lsn(next.lsn));
                }
                return Err(e);
            }
        }
        self.relations.insert(relation.id, Arc::new(relation));
        Ok(())
    }

    /// The open transaction's commit: skipped if the tables hold it already (sent again
    /// after a restart), else added to the batch; one without changes to the streamed tables
    /// is acknowledged at once when nothing waits before it.
    fn end_transaction(&mut self, end_lsn: Lsn) {
        self.seen_lsn = self.seen_lsn.max(end_lsn.0);
        let Some(mut txn) = self.open.take() else {
            return;
        };
        txn.end_lsn = end_lsn.0;
        if txn.end_lsn <= self.position.lsn
            || self.batch.last().is_some_and(|t| txn.end_lsn <= t.end_lsn)
        {
            self.report.skipped_transactions += 1;
        } else if !txn.changes.is_empty() {
            self.batching.add(txn.changes.len());
            self.batch.push(txn);
        } else if self.batch.is_empty() {
            self.client.update_applied_lsn(end_lsn);
            self.last_ack = Some(Instant::now());
        }
    }

    /// The server's keep-alive: acknowledges its WAL end when nothing is held back, and
    /// reports the lag.
    fn keep_alive(&mut self, wal_end: Lsn) {
        self.seen_lsn = self.seen_lsn.max(wal_end.0);
        // Nothing held back: every change before `wal_end` is in the tables.
        let idle = self.open.is_none() && self.batch.is_empty();
        if idle && wal_end.0 > self.position.lsn {
            self.client.update_applied_lsn(wal_end);
        }
        if let Some(progress) = &self.request.stream.progress {
            let behind = wal_end.0.saturating_sub(self.position.lsn);
            progress(FollowEvent::Lag {
                lag_bytes: if idle { 0 } else { behind },
                lag_seconds: self
                    .batch
                    .first()
                    .map(|t| (chrono::Utc::now().timestamp_micros() - t.commit_us) as f64 / 1e6)
                    .unwrap_or(0.0),
            });
        }
    }

    /// Ends the stream and the connection; the report of what it did.
    async fn finish(mut self) -> FollowReport {
        // The session sends the acknowledged LSN every STATUS_INTERVAL and not when it stops:
        // let the last one reach the server, so the slot's lag reads 0 once caught up (a
        // restart would skip those transactions anyway).
        if let Some(acked) = self.last_ack {
            let wait = slot::STATUS_INTERVAL + Duration::from_millis(100);
            tokio::time::sleep(wait.saturating_sub(acked.elapsed())).await;
        }
        let _ = self.client.shutdown().await;
        let _ = self.conn.close().await;
        self.report
    }
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
