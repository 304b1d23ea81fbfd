//! What a load tells as it goes ([`LoadEvent`]) and when it is done ([`LoadReport`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
