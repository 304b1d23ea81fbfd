//! What following any database's changes reports: each batch committed, the stream's lag,
//! and what a follow did when it stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use basin_catalog::{Content, Key, Resolved};
use basin_core::{Error, Result};
use basin_table::{SOURCE_PROPERTY, Tables};
use serde::Serialize;

use crate::database::report::{LoadProgress, LoadReport};

/// The suffix of a source table's changelog table.
pub const CHANGELOG_SUFFIX: &str = "_changelog";

/// The snapshot summary key of when a batch's last source transaction committed at the
/// source (ms since the epoch).
pub const COMMIT_TIME_PROPERTY: &str = "basin.source.commit-time-ms";

/// How streaming goes.
pub enum FollowEvent<'a> {
    /// The full load committed.
    Loaded(&'a LoadReport),
    /// A batch committed.
    Batch(&'a BatchReport),
    /// How far behind the tables are (for metrics): bytes of the server's log not applied
    /// yet, and the age of the oldest change waiting.
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
    /// Where the last transaction committed at the source, recorded in the tables'
    /// snapshots: Postgres's commit LSN, MySQL's binary log `file:position`.
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
    /// Postgres: the replication slot; MySQL: none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub slot: String,
    pub full_load: Option<LoadReport>,
    pub batches: u64,
    pub transactions: u64,
    pub changes: u64,
    /// Transactions Postgres sent again that the tables already held (after a restart).
    pub skipped_transactions: u64,
    /// Where the tables stand at the source (as [`BatchReport::lsn`]).
    pub lsn: Option<String>,
}

/// How a change stream runs, whatever the database.
#[derive(Clone)]
pub struct StreamOptions {
    /// The branch the tables are on.
    pub branch: String,
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

/// What a batch did.
#[derive(Clone, Debug, Default)]
pub(crate) struct Applied {
    pub commit: Option<String>,
    pub changes: u64,
    pub tables: usize,
    pub files_rewritten: usize,
}

/// A batch's commit message: `cdc SOURCE: N transactions, M changes (AT)`.
pub(crate) fn batch_message(source: &str, transactions: usize, changes: u64, at: &str) -> String {
    format!(
        "cdc {source}: {transactions} transaction{}, {changes} change{} ({at})",
        if transactions == 1 { "" } else { "s" },
        if changes == 1 { "" } else { "s" },
    )
}

/// Without `--follow`, a stream counts as caught up after this long with nothing new.
pub(crate) const IDLE_DONE: Duration = Duration::from_secs(3);

/// The batch of whole source transactions being gathered: when it is due, and how long a
/// stream may wait for the next event before it is.
pub(crate) struct Batching {
    /// A batch is committed once it holds this many changes...
    rows: usize,
    /// ...or its first transaction waited this long.
    wait: Duration,
    changes: usize,
    started: Instant,
}

impl Batching {
    pub(crate) fn new(rows: usize, seconds: f64) -> Self {
        Self {
            rows,
            wait: Duration::from_secs_f64(seconds.max(0.0)),
            changes: 0,
            started: Instant::now(),
        }
    }

    /// A transaction of `changes` joins the batch (the first starts its clock).
    pub(crate) fn add(&mut self, changes: usize) {
        if self.changes == 0 {
            self.started = Instant::now();
        }
        self.changes += changes;
    }

    /// The batch was committed.
    pub(crate) fn clear(&mut self) {
        self.changes = 0;
    }

    /// What a stream does next with a batch of `transactions`: commit it (due, or the stream
    /// is caught up or stopping), end, or wait for the next event this long.
    pub(crate) fn step(&self, transactions: usize, caught_up: bool, stopping: bool) -> Step {
        if self.due(transactions) || ((caught_up || stopping) && transactions > 0) {
            Step::Commit
        } else if caught_up || stopping {
            Step::Done
        } else {
            Step::Receive(self.wait(transactions))
        }
    }

    /// Whether a batch of `transactions` is due.
    fn due(&self, transactions: usize) -> bool {
        transactions > 0 && (self.changes >= self.rows || self.started.elapsed() >= self.wait)
    }

    /// How long to wait for the next event: until the batch is due, or a second.
    fn wait(&self, transactions: usize) -> Duration {
        if transactions == 0 {
            Duration::from_secs(1)
        } else {
            self.wait
                .saturating_sub(self.started.elapsed())
                .max(Duration::from_millis(1))
        }
    }
}

/// A stream's next step ([`Batching::step`]).
pub(crate) enum Step {
    Commit,
    Done,
    Receive(Duration),
}

/// A source transaction holds more changes than `[sources.NAME] max_transaction_changes`.
pub(crate) fn too_big(source: &str, limit: usize) -> Error {
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

/// For each of `keys` that is a table as of `at`: the summary properties and commit time
/// (ms) of its newest snapshot recording `source` with `property` (a compaction's records
/// none): where a stream stands, as each table says.
pub(crate) async fn recorded(
    tables: &Tables,
    at: &Resolved,
    source: &str,
    keys: &[Key],
    property: &str,
) -> Result<Vec<(HashMap<String, String>, i64)>> {
    let mut found = Vec::new();
    for key in keys {
        let Some(Content::Table { metadata_location }) = tables.catalog().content(at, key).await?
        else {
            continue;
        };
        let table = tables.load_from(key, &metadata_location).await?;
        let metadata = table.metadata();
        let mut snapshot = metadata.current_snapshot().cloned();
        while let Some(s) = snapshot {
            let props = &s.summary().additional_properties;
            if props.get(SOURCE_PROPERTY).map(String::as_str) == Some(source)
                && props.contains_key(property)
            {
                found.push((props.clone(), s.timestamp_ms()));
                break;
            }
            snapshot = s
                .parent_snapshot_id()
                .and_then(|id| metadata.snapshot_by_id(id).cloned());
        }
    }
    Ok(found)
}
