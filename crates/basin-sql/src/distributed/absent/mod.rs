//! Distributed SQL left out of this build (the `cluster` feature off): the names the rest of
//! Basin uses, none of which can reach a cluster. Nothing here can be made (the handles are
//! empty enums); every door to a cluster fails with [`left_out`]'s words.

mod handles;

use std::path::Path;

use basin_core::Result;
use basin_table::Tables;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;

pub use handles::{Scheduler, SqlExecutor};

use super::Cluster;
use super::cluster::left_out;
use crate::engine::Engine;
use crate::provider::RefCatalog;

/// Fails: this build has no scheduler.
pub async fn start_scheduler(
    _listen: &str,
    _engine: &Engine,
    _tables: &Tables,
    _token: &str,
) -> Result<Scheduler> {
    Err(left_out())
}

/// Fails: this build has no executor.
pub async fn start_executor(
    _scheduler: &str,
    _listen: &str,
    _advertise: Option<&str>,
    _slots: usize,
    _work_dir: &Path,
    _engine: &Engine,
    _token: &str,
) -> Result<SqlExecutor> {
    Err(left_out())
}

/// Fails: this build cannot send a query to a cluster.
pub(crate) fn context(
    _engine: &Engine,
    _catalog: &RefCatalog,
    _cluster: &Cluster,
    _local: &SessionContext,
) -> Result<SessionContext> {
    Err(left_out())
}

/// Fails: this build has no distributed planner.
pub(super) async fn stages(_ctx: &SessionContext, _plan: &LogicalPlan) -> Result<Vec<String>> {
    Err(left_out())
}
