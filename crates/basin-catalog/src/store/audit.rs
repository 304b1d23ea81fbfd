//! The audit log: every change to the lakehouse and every refusal, with who asked, when,
//! through which door, and how it ended (`basin audit ls`).

use async_trait::async_trait;

use crate::model::{AuditEntry, AuditFilter};
use basin_core::Result;

#[async_trait]
pub trait Audit: Send + Sync {
    /// Stores an entry. It follows what it records (done or refused already), so the write
    /// does not wait for the disk (SQLite: `synchronous = NORMAL`; Postgres:
    /// `synchronous_commit = off`): a crash of the process loses nothing, a crash of the
    /// machine may lose the last entries, as one between the change and its entry would.
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()>;

    /// Entries matching `filter`, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;

    /// Deletes the entries older than `before_ms`; how many.
    async fn prune_audit(&self, before_ms: i64) -> Result<u64>;
}
