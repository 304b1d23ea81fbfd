//! Metering: one record per function invocation or SQL query. The catalog store keeps them
//! beside commits, so usage survives with the lakehouse and every node shares it.

use serde::{Deserialize, Serialize};

/// How an invocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvocationStatus {
    /// The function returned.
    Ok,
    /// The function raised, or its program exited without a result.
    Error,
    /// Killed at its wall-clock limit.
    Timeout,
    /// Killed at its memory limit.
    Memory,
    /// A query whose client left before its answer ended (it was stopped then).
    Abandoned,
}

impl InvocationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "ok" => Self::Ok,
            "timeout" => Self::Timeout,
            "memory" => Self::Memory,
            "abandoned" => Self::Abandoned,
            _ => Self::Error,
        }
    }
}

/// What was metered: a function's run, or a SQL query through one of Basin's front doors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvocationKind {
    #[default]
    Function,
    Query,
}

impl InvocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Query => "query",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "query" => Self::Query,
            _ => Self::Function,
        }
    }
}

/// What one invocation (or query) used, as recorded for `basin usage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub id: String,
    /// How the user names it, e.g. `clean.py:orders`.
    pub function: String,
    pub env_hash: String,
    pub started_at_ms: i64,
    pub duration_ms: f64,
    pub cpu_ms: f64,
    pub peak_memory_bytes: u64,
    /// The memory it was given: what a per-GB-second price bills.
    pub memory_limit_bytes: u64,
    pub rows_in: u64,
    pub bytes_in: u64,
    pub rows_out: u64,
    pub bytes_out: u64,
    pub status: InvocationStatus,
    pub error: Option<String>,
    #[serde(default)]
    pub kind: InvocationKind,
    /// Bytes a query read from storage (what Athena bills); 0 for functions.
    #[serde(default)]
    pub bytes_scanned: u64,
}

impl InvocationRecord {
    /// Gigabyte-seconds as Lambda bills them: the memory given times the duration.
    pub fn gb_seconds(&self) -> f64 {
        self.memory_limit_bytes as f64 / (1u64 << 30) as f64 * self.duration_ms / 1000.0
    }
}
