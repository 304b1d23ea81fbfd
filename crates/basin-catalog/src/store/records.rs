//! What happened, as records: metering of invocations and queries, pipeline runs and
//! maintenance runs (JSON documents the service owns).

use async_trait::async_trait;

use basin_core::{InvocationRecord, Result};

#[async_trait]
pub trait Records: Send + Sync {
    /// Records a finished function invocation (metering).
    async fn record_invocation(&self, record: &InvocationRecord) -> Result<()>;

    /// Invocations started at or after `since_ms`, oldest first.
    async fn invocations(&self, since_ms: i64) -> Result<Vec<InvocationRecord>>;

    /// Saves (or replaces) a pipeline run's record, a JSON document owned by the service.
    async fn save_run(&self, id: &str, started_at_ms: i64, record: &str) -> Result<()>;

    /// The newest runs' records, newest first.
    async fn runs(&self, limit: usize) -> Result<Vec<String>>;

    /// Records of the runs whose id starts with `prefix`, newest first (at most 11: enough to
    /// list the candidates of an ambiguous prefix, and to say there are more).
    async fn runs_with_prefix(&self, prefix: &str) -> Result<Vec<String>>;

    /// Deletes the records of these runs; returns how many there were.
    async fn delete_runs(&self, ids: &[String]) -> Result<u64>;

    /// Saves (or replaces) a maintenance run's record, a JSON document owned by the service.
    async fn save_maintenance(&self, id: &str, started_at_ms: i64, record: &str) -> Result<()>;

    /// The newest maintenance runs' records, newest first.
    async fn maintenance_runs(&self, limit: usize) -> Result<Vec<String>>;

    /// Deletes the records of maintenance runs started before `before_ms`; returns how many.
    async fn delete_maintenance_before(&self, before_ms: i64) -> Result<u64>;
}
