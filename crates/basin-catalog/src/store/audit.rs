//! The audit log: every change to the lakehouse and every refusal, with who asked, when,
//! through which door, and how it ended (`basin audit ls`).

use async_trait::async_trait;

use crate::model::{AuditEntry, AuditFilter};
use basin_core::Result;

#[async_trait]
pub trait Audit: Send + Sync {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()>;

    /// Entries matching `filter`, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;

    /// Deletes the entries older than `before_ms`; how many.
    async fn prune_audit(&self, before_ms: i64) -> Result<u64>;
}
