//! What following any database's changes reports: each batch committed, the stream's lag,
//! and what a follow did when it stopped.

use std::sync::Arc;

use serde::Serialize;

use crate::database::report::LoadReport;

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
