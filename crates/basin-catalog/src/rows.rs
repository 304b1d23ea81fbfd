//! Rows to the catalog's nouns, the same for every store: SQLite and Postgres return the
//! same columns (Postgres casts its JSONB columns to text), so one mapping serves both.

use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use crate::events::{EventRecord, EventState};
use crate::model::TokenRecord;
use crate::model::{Commit, CommitId, Content, Ref, RefKind};
use basin_core::{Error, Result};
use basin_core::{InvocationKind, InvocationRecord, InvocationStatus};

/// A row of either database, read by column name.
pub(crate) trait CatalogRow {
    fn text(&self, column: &str) -> Result<String>;
    fn text_opt(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>>;
    fn float(&self, column: &str) -> Result<f64>;
}

macro_rules! catalog_row {
    ($row:ty) => {
        impl CatalogRow for $row {
            fn text(&self, column: &str) -> Result<String> {
                Ok(self.try_get(column)?)
            }
            fn text_opt(&self, column: &str) -> Result<Option<String>> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64> {
                Ok(self.try_get(column)?)
            }
            fn int_opt(&self, column: &str) -> Result<Option<i64>> {
                Ok(self.try_get(column)?)
            }
            fn float(&self, column: &str) -> Result<f64> {
                Ok(self.try_get(column)?)
            }
        }
    };
}

catalog_row!(SqliteRow);
catalog_row!(PgRow);

/// The tables of JSON records the service owns: an id, a start time, a document.
#[derive(Clone, Copy)]
pub(crate) enum RecordTable {
    /// Pipeline runs.
    Runs,
    /// Maintenance runs.
    Maintenance,
}

impl RecordTable {
    pub(crate) fn table(self) -> &'static str {
        match self {
            RecordTable::Runs => "runs",
            RecordTable::Maintenance => "maintenance_runs",
        }
    }

    /// Saves (or replaces) a record: `$1` id, `$2` start, `$3` the document.
    pub(crate) fn upsert_sql(self) -> String {
        format!(
            "INSERT INTO {} (id, started_at_ms, record) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            self.table()
        )
    }

    /// The newest `$1` records, newest first.
    pub(crate) fn newest_sql(self) -> String {
        format!(
            "SELECT record FROM {} ORDER BY started_at_ms DESC, id DESC LIMIT $1",
            self.table()
        )
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

/// The `LIKE` pattern of ids starting with `prefix`. Both stores match it case-insensitively
/// (SQLite's `LIKE`, Postgres's `ILIKE`); `%` and `_` are dropped from the prefix.
pub(crate) fn like_prefix(prefix: &str) -> String {
    format!("{}%", prefix.replace(['%', '_'], ""))
}

pub(crate) fn ref_kind(s: &str) -> RefKind {
    if s == "tag" {
        RefKind::Tag
    } else {
        RefKind::Branch
    }
}

/// Columns `name`, `kind`, `commit_id`.
pub(crate) fn ref_row(row: &impl CatalogRow) -> Result<Ref> {
    Ok(Ref {
        name: row.text("name")?,
        kind: ref_kind(&row.text("kind")?),
        head: CommitId::from_string(row.text("commit_id")?),
    })
}

/// The columns of `commits`, `operations` and `properties` as JSON text.
pub(crate) fn commit_row(row: &impl CatalogRow) -> Result<Commit> {
    Ok(Commit {
        id: CommitId::from_string(row.text("id")?),
        parent: row.text_opt("parent")?.map(CommitId::from_string),
        merge_parent: row.text_opt("merge_parent")?.map(CommitId::from_string),
        author: row.text("author")?,
        message: row.text("message")?,
        created_at_ms: row.int("created_at_ms")?,
        operations: serde_json::from_str(&row.text("operations")?)?,
        properties: serde_json::from_str(&row.text("properties")?)?,
    })
}

pub(crate) fn content(json: &str) -> Result<Content> {
    Ok(serde_json::from_str(json)?)
}

/// The columns of `events`, `payload` and `result` as JSON text.
pub(crate) fn event_row(row: &impl CatalogRow) -> Result<EventRecord> {
    let state = row.text("state")?;
    let json = |column: &str| -> Result<Option<serde_json::Value>> {
        Ok(row
            .text_opt(column)?
            .map(|t| serde_json::from_str(&t))
            .transpose()?)
    };
    Ok(EventRecord {
        id: row.text("id")?,
        function: row.text("function")?,
        state: EventState::parse(&state)
            .ok_or_else(|| Error::internal(format!("event state `{state}`")))?,
        payload: json("payload")?.unwrap_or_default(),
        attempts: row.int("attempts")? as u32,
        max_attempts: row.int("max_attempts")? as u32,
        created_at_ms: row.int("created_at_ms")?,
        updated_at_ms: row.int("updated_at_ms")?,
        next_at_ms: row.int("next_at_ms")?,
        lease_until_ms: row.int_opt("lease_until_ms")?,
        error: row.text_opt("error")?,
        logs: row.text("logs")?,
        commit: row.text_opt("commit_id")?,
        result: json("result")?,
        node: row.text_opt("node")?,
    })
}

pub(crate) fn invocation_row(row: &impl CatalogRow) -> Result<InvocationRecord> {
    Ok(InvocationRecord {
        id: row.text("id")?,
        function: row.text("function")?,
        env_hash: row.text("env_hash")?,
        started_at_ms: row.int("started_at_ms")?,
        duration_ms: row.float("duration_ms")?,
        cpu_ms: row.float("cpu_ms")?,
        peak_memory_bytes: row.int("peak_memory_bytes")? as u64,
        memory_limit_bytes: row.int("memory_limit_bytes")? as u64,
        rows_in: row.int("rows_in")? as u64,
        bytes_in: row.int("bytes_in")? as u64,
        rows_out: row.int("rows_out")? as u64,
        bytes_out: row.int("bytes_out")? as u64,
        status: InvocationStatus::parse(&row.text("status")?),
        error: row.text_opt("error")?,
        kind: InvocationKind::parse(&row.text("kind")?),
        bytes_scanned: row.int("bytes_scanned")? as u64,
    })
}

pub(crate) fn token_row(row: &impl CatalogRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        role: row.text("role")?,
        hash: row.text("hash")?,
        created_at_ms: row.int("created_at_ms")?,
        grants: match row.text_opt("grants")? {
            Some(json) => serde_json::from_str(&json)?,
            None => Vec::new(),
        },
    })
}

/// A review's row, without its approvals (`review_approvals`).
pub(crate) fn review_row(row: &impl CatalogRow) -> Result<crate::ReviewRecord> {
    Ok(crate::ReviewRecord {
        id: row.int("id")?,
        source: row.text("source")?,
        target: row.text("target")?,
        author: row.text("author")?,
        title: row.text("title")?,
        state: crate::ReviewState::parse(&row.text("state")?)?,
        created_at_ms: row.int("created_at_ms")?,
        closed_at_ms: row.int_opt("closed_at_ms")?,
        closed_by: row.text_opt("closed_by")?,
        merged_commit: row.text_opt("merged_commit")?,
        approvals: Vec::new(),
    })
}

pub(crate) fn approval_row(row: &impl CatalogRow) -> Result<(i64, crate::Approval)> {
    Ok((
        row.int("review_id")?,
        crate::Approval {
            principal: row.text("principal")?,
            source_head: row.text("source_head")?,
            approved_at_ms: row.int("approved_at_ms")?,
        },
    ))
}

pub(crate) fn audit_row(row: &impl CatalogRow) -> Result<crate::AuditEntry> {
    Ok(crate::AuditEntry {
        id: row.int("id")?,
        at_ms: row.int("at_ms")?,
        principal: row.text("principal")?,
        door: row.text("door")?,
        action: row.text("action")?,
        target: row.text("target")?,
        outcome: row.text("outcome")?,
        detail: row.text("detail")?,
    })
}
