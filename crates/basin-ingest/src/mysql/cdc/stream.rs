//! `basin ingest NAME --follow` for MySQL and MariaDB: the full load (when the tables hold no
//! position yet), then the binary log read as a replica reads it, from the position the
//! tables hold, whole source transactions applied in batches until stopped (or, without
//! `--follow`, until caught up with where the log stood at the start).

use std::collections::HashMap;
use std::time::Instant;

use basin_catalog::Key;
use basin_core::{Error, Result};
use basin_table::Tables;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};

use super::apply::{Txn, apply};
use super::gtid::{Gtid, GtidState};
use super::position::{BinlogPos, stored_binlog};
use super::targets::{self, Target, check_server, server_position};
use crate::database::follow::{
    Applied, BatchReport, Batching, FollowEvent, FollowReport, IDLE_DONE, Step, StreamOptions,
};
use crate::mysql::connect::{self, MySource, failed};
use crate::mysql::load_mysql;

/// What to stream, where, in which batches.
pub struct MyFollowRequest {
    pub source: MySource,
    pub stream: StreamOptions,
}

/// The replica id Basin gives itself for source `name`: stable (a server ends an older
/// stream of the same id, so a restarted follow replaces its predecessor) and far from the
/// small ids servers are usually given.
fn replica_id(name: &str) -> u32 {
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    });
    0x4000_0000 | (hash & 0x3fff_ffff)
}

/// Streams `request`'s source into its tables: see the module's docs.
pub async fn follow_mysql(tables: &Tables, request: MyFollowRequest) -> Result<FollowReport> {
    let source = &request.source;
    let name = source.name.clone();
    tables
        .catalog()
        .resolve(&request.stream.branch)
        .await?
        .writable_branch()?;
    let mut conn = connect::connect(source).await?;
    check_server(&mut conn, source).await?;
    let targets = targets::targets(&mut conn, source, request.stream.skip_unsupported).await?;
    let keys: Vec<Key> = targets
        .values()
        .flat_map(|t| [t.current.clone(), t.changelog.clone()])
        .collect();
    let mut report = FollowReport {
        source: name.clone(),
        ..Default::default()
    };
    let (position, gtid) = start_position(tables, &request, &keys, &mut report).await?;
    report.lsn = Some(position.to_string());
    let server = Server::read(&mut conn, source).await?;
    // MariaDB follows the GTID state when the tables hold one.
    let gtid = gtid
        .filter(|_| server.mariadb)
        .and_then(|g| GtidState::parse(&g));
    if *request.stream.stop.borrow() {
        return Ok(report);
    }
    let target = server_position(&mut conn)
        .await
        .map_err(|e| failed(source, "cannot read the binary log's position", e))?
        .unwrap_or_else(|| position.clone());
    // From the file and offset while the server keeps the file; else from the GTID state.
    let by_gtid = gtid.as_ref().filter(|_| !server.keeps(&position.file));
    let _ = conn.disconnect().await;
    let stream = open_stream(source, &position, &server, by_gtid).await?;
    tracing::info!(source = %name, binlog = %position, gtid = ?gtid.as_ref().map(ToString::to_string), by_gtid = by_gtid.is_some(), "streaming changes");
    let mut follower = Follower {
        tables,
        request: &request,
        name,
        stream,
        targets,
        file: position.file.clone(),
        described: false,
        checksum: server.checksum,
        gtid,
        pending: None,
        position: position.clone(),
        seen: position,
        report,
        open: None,
        batch: Vec::new(),
        batching: Batching::new(request.stream.batch_rows, request.stream.batch_seconds),
        last_event: Instant::now(),
    };
    follower.stream(&target).await?;
    Ok(follower.finish().await)
}

/// Where streaming starts: the tables' position (unless a full load is asked for); else the
/// position a full load records.
async fn start_position(
    tables: &Tables,
    request: &MyFollowRequest,
    keys: &[Key],
    report: &mut FollowReport,
) -> Result<(BinlogPos, Option<String>)> {
    let name = request.source.name.as_str();
    let at = tables.catalog().resolve(&request.stream.branch).await?;
    let stored = stored_binlog(tables, &at, name, keys).await?;
    if let Some(position) = stored.position.filter(|_| !request.stream.full) {
        return Ok((position, stored.gtid));
    }
    let load = load_mysql(
        tables,
        request.source.clone(),
        &request.stream.branch,
        request.stream.skip_unsupported,
        request.stream.load_progress.clone(),
    )
    .await?;
    if let Some(progress) = &request.stream.progress {
        progress(FollowEvent::Loaded(&load));
    }
    report.full_load = Some(load);
    let at = tables.catalog().resolve(&request.stream.branch).await?;
    let stored = stored_binlog(tables, &at, name, keys).await?;
    let gtid = stored.gtid;
    stored.position.map(|p| (p, gtid)).ok_or_else(|| {
        Error::invalid(format!(
            "source `{name}`: the full load recorded no binary log position"
        ))
        .with_hint("the source's user needs REPLICATION CLIENT to read it (docs/ingest-mysql.md)")
    })
}

/// What the stream needs to know of the server: MariaDB or MySQL, whether its events carry
/// a checksum, and the log files it keeps.
struct Server {
    mariadb: bool,
    checksum: bool,
    files: Vec<String>,
}

impl Server {
    async fn read(conn: &mut Conn, source: &MySource) -> Result<Self> {
        let row: Option<(String, Option<String>)> = conn
            .query_first("SELECT @@version, @@GLOBAL.binlog_checksum")
            .await
            .map_err(|e| failed(source, "cannot read the server's version", e))?;
        let (version, checksum) = row.unwrap_or_default();
        let files: Vec<mysql_async::Row> = conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(|e| failed(source, "cannot list the binary log's files", e))?;
        Ok(Self {
            mariadb: version.contains("MariaDB"),
            checksum: !checksum.unwrap_or_default().eq_ignore_ascii_case("NONE"),
            files: files.iter().filter_map(|r| r.get::<String, _>(0)).collect(),
        })
    }

    fn keeps(&self, file: &str) -> bool {
        self.files.iter().any(|f| f == file)
    }
}

/// The binary log from `position` (MariaDB: from the GTID state `gtid`, when known), as a
/// replica reads it, with a heartbeat every second while the server has nothing to send.
async fn open_stream(
    source: &MySource,
    position: &BinlogPos,
    server: &Server,
    gtid: Option<&GtidState>,
) -> Result<BinlogStream> {
    let mut conn = connect::connect(source).await?;
    let mut settings = vec!["SET @master_heartbeat_period = 1000000000".to_string()];
    if server.mariadb {
        // GTID events instead of `BEGIN`, so the stream knows each transaction's GTID.
        settings.push("SET @mariadb_slave_capability = 4".into());
        if let Some(gtid) = gtid {
            settings.push(format!("SET @slave_connect_state = '{gtid}'"));
            settings.push("SET @slave_gtid_strict_mode = 0".into());
        }
    }
    for setting in settings {
        conn.query_drop(&setting)
            .await
            .map_err(|e| failed(source, "cannot set up the binary log stream", e))?;
    }
    let request = BinlogStreamRequest::new(replica_id(&source.name))
        .with_filename(position.file.as_bytes())
        .with_pos(position.offset);
    conn.get_binlog_stream(request)
        .await
        .map_err(|e| stream_error(&source.name, e))
}

fn stream_error(source: &str, e: mysql_async::Error) -> Error {
    let text = e.to_string();
    let hint = if text.contains("first log file") || text.contains("Could not find") {
        format!(
            "the server no longer keeps the binary log file the tables stopped at (purged, or another server): run `basin ingest {source} --full` to load again"
        )
    } else if text.contains("denied") || text.contains("privilege") {
        "grant the source's user REPLICATION SLAVE and REPLICATION CLIENT (docs/ingest-mysql.md)"
            .to_string()
    } else {
        "Basin resumes from the tables' position when run again".to_string()
    };
    Error::io(format!("source `{source}`: binary log stream: {text}")).with_hint(hint)
}

/// A stream under way: the transaction being received, the whole ones waiting for their
/// batch's commit, and where the tables and the log are. Its events are received in
/// [`super::events`].
pub(super) struct Follower<'a> {
    pub tables: &'a Tables,
    pub request: &'a MyFollowRequest,
    pub name: String,
    pub stream: BinlogStream,
    pub targets: HashMap<(String, String), Target>,
    /// The log file being read.
    pub file: String,
    /// The server has sent the format description of the file being read.
    pub described: bool,
    /// The server's events end in a checksum.
    pub checksum: bool,
    /// MariaDB's GTID state after the last transaction received, when followed.
    pub gtid: Option<GtidState>,
    /// The GTID of the transaction being received (MariaDB).
    pub pending: Option<Gtid>,
    /// What the tables hold: after the last transaction applied.
    pub position: BinlogPos,
    /// The furthest position the server has sent.
    pub seen: BinlogPos,
    pub report: FollowReport,
    /// The source transaction being received.
    pub open: Option<Txn>,
    /// Whole transactions received and not committed yet, in commit order.
    pub batch: Vec<Txn>,
    pub batching: Batching,
    pub last_event: Instant,
}

impl Follower<'_> {
    /// Receives and commits batches until stopped or (without `--follow`) caught up with
    /// `target`.
    async fn stream(&mut self, target: &BinlogPos) -> Result<()> {
        let request = self.request;
        let mut stop = request.stream.stop.clone();
        loop {
            let caught_up = !request.stream.follow
                && self.open.is_none()
                && (self.seen >= *target || self.last_event.elapsed() >= IDLE_DONE);
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
                event = self.stream.next() => event,
                _ = tokio::time::sleep(wait) => continue,
                _ = stop.changed() => continue,
            };
            let Some(event) = event else {
                return Err(Error::io(format!(
                    "source `{}`: the server ended the binary log stream",
                    self.name
                ))
                .with_hint("check the server's log; Basin resumes from the tables' position when run again"));
            };
            let event = event.map_err(|e| stream_error(&self.name, e))?;
            self.receive(event).await?;
        }
    }

    /// Commits the batch.
    pub(super) async fn commit_batch(&mut self) -> Result<()> {
        let started = Instant::now();
        let txns = std::mem::take(&mut self.batch);
        self.batching.clear();
        let applied: Applied = apply(
            self.tables,
            &self.name,
            &self.request.stream.branch,
            &self.targets,
            &txns,
        )
        .await?;
        let last = txns.last().expect("a batch");
        self.position = last.end.clone();
        let report = &mut self.report;
        report.batches += 1;
        report.transactions += txns.len() as u64;
        report.changes += applied.changes;
        report.lsn = Some(self.position.to_string());
        let now = chrono::Utc::now().timestamp_micros();
        let batch_report = BatchReport {
            source: self.name.clone(),
            commit: applied.commit.unwrap_or_default(),
            transactions: txns.len(),
            changes: applied.changes,
            tables: applied.tables,
            files_rewritten: applied.files_rewritten,
            lsn: self.position.to_string(),
            lag_seconds: ((now - last.commit_us) as f64 / 1e6).max(0.0),
            oldest_lag_seconds: ((now - txns[0].commit_us) as f64 / 1e6).max(0.0),
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(source = %self.name, binlog = %batch_report.lsn, transactions = batch_report.transactions, changes = batch_report.changes, "batch committed");
        if let Some(progress) = &self.request.stream.progress {
            progress(FollowEvent::Batch(&batch_report));
        }
        Ok(())
    }

    /// How far behind the tables are, for metrics.
    pub(super) fn report_lag(&self) {
        let Some(progress) = &self.request.stream.progress else {
            return;
        };
        let idle = self.open.is_none() && self.batch.is_empty();
        let behind = if idle || self.seen.file != self.position.file {
            0
        } else {
            self.seen.offset.saturating_sub(self.position.offset)
        };
        progress(FollowEvent::Lag {
            lag_bytes: behind,
            lag_seconds: self
                .batch
                .first()
                .map(|t| (chrono::Utc::now().timestamp_micros() - t.commit_us) as f64 / 1e6)
                .unwrap_or(0.0)
                .max(0.0),
        });
    }

    /// Ends the stream and the connection; the report of what it did.
    async fn finish(self) -> FollowReport {
        let _ = self.stream.close().await;
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ids_differ_by_source_and_stay_clear_of_small_ids() {
        assert_ne!(replica_id("a"), replica_id("b"));
        assert!(replica_id("a") >= 0x4000_0000);
    }
}
