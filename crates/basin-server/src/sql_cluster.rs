//! Distributed SQL on a cluster: `basin serve` runs the Ballista scheduler at
//! `[sql.ballista] scheduler`, each `basin worker` joins it with an executor.

use basin_core::Result;
use basin_service::Lakehouse;
use basin_sql::distributed::{Scheduler, SqlExecutor};

/// Starts the scheduler when `[sql.ballista] scheduler` is set; this node's queries use it.
pub(crate) async fn start_scheduler(lakehouse: &Lakehouse) -> Result<Option<Scheduler>> {
    let Some(address) = &lakehouse.settings().sql.ballista.scheduler else {
        return Ok(None);
    };
    // The lakehouse joined the cluster with the catalog's token when it opened.
    let token = cluster_token(lakehouse).await?;
    let scheduler = basin_sql::distributed::start_scheduler(
        address,
        lakehouse.sql(),
        lakehouse.iceberg_tables(),
        &token,
    )
    .await?;
    lakehouse.sql().use_scheduler(&scheduler, &token);
    Ok(Some(scheduler))
}

/// Joins the scheduler with an executor when `[sql.ballista] scheduler` is set. Its data
/// port carries no token: said in the log when it listens beyond loopback.
pub(crate) async fn start_executor(lakehouse: &Lakehouse) -> Result<Option<SqlExecutor>> {
    let settings = &lakehouse.settings().sql.ballista;
    let Some(scheduler) = &settings.scheduler else {
        return Ok(None);
    };
    let token = cluster_token(lakehouse).await?;
    let work_dir = lakehouse.root().join(".basin").join("sql-executor");
    // Stage outputs of queries a previous run of this node held are of no use now.
    let _ = std::fs::remove_dir_all(&work_dir);
    let executor = basin_sql::distributed::start_executor(
        scheduler,
        &settings.executor_listen,
        settings.executor_advertise.as_deref(),
        settings.executor_slots,
        &work_dir,
        lakehouse.sql(),
        &token,
    )
    .await?;
    if !executor.addr().ip().is_loopback() {
        tracing::warn!(
            addr = %executor.addr(),
            "the SQL executor's data port takes no token (Ballista's shuffle reads cannot send one): \
             keep it on a private network, reachable by the other nodes only"
        );
    }
    Ok(Some(executor))
}

/// The token the lakehouse joined the cluster with when it opened; read from the catalog only
/// if it has not.
async fn cluster_token(lakehouse: &Lakehouse) -> Result<String> {
    match lakehouse.sql().cluster_token() {
        Some(token) => Ok(token),
        None => lakehouse.cluster_token().await,
    }
}
