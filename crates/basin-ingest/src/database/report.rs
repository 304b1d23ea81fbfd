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

impl LoadReport {
    /// The report of a load committed as `commit`, its totals summed from `tables`.
    pub(crate) fn new(
        source: String,
        branch: String,
        commit: String,
        tables: Vec<TableLoad>,
        skipped_columns: Vec<SkippedColumn>,
        seconds: f64,
        lsn: Option<String>,
    ) -> Self {
        let rows = tables.iter().map(|t| t.rows).sum();
        Self {
            source,
            branch,
            commit,
            bytes: tables.iter().map(|t| t.bytes).sum(),
            rows,
            tables,
            seconds,
            rows_per_second: super::per_second(rows, seconds),
            skipped_columns,
            lsn,
        }
    }

    /// The commit message of a load of `tables` from source `name`.
    pub(crate) fn message(name: &str, tables: &[TableLoad]) -> String {
        let rows: u64 = tables.iter().map(|t| t.rows).sum();
        let s = if tables.len() == 1 { "" } else { "s" };
        format!("ingest {name}: {} table{s}, {rows} rows", tables.len())
    }
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
