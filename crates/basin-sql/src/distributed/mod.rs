//! Distributed SQL: a query too big for one node runs on Apache DataFusion Ballista,
//! embedded as libraries (the scheduler in `basin serve`, executors in `basin worker`).
//!
//! The client plans the query as usual and sends the logical plan; Basin's tables travel by
//! their metadata location ([`codec`]) and the scheduler plans their files, with the same
//! manifest pruning, as plain Parquet scans that executors read straight from the
//! warehouse. `[sql] engine` picks where a query runs: `local`, `ballista` (every query
//! that can), or `auto` (queries whose tables hold at least `[sql] distributed_threshold`).
//! A query Ballista cannot run as it is (a table with delete files, a view of the session)
//! runs on the local engine, and `EXPLAIN` says why.
//!
//! Ballista is the `cluster` feature (on by default). A build without it (`scripts/demo.sh`'s
//! quick first build) keeps the same names in [`absent`], whose every door to a cluster
//! fails saying so, and routes every query here.

#[cfg(not(feature = "cluster"))]
mod absent;
mod cluster;
#[cfg(feature = "cluster")]
mod codec;
#[cfg(feature = "cluster")]
mod handles;
#[cfg(feature = "cluster")]
mod nodes;
#[cfg(feature = "cluster")]
mod planning;

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use basin_core::units::format_size;
use basin_core::{Error, Result};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

#[cfg(not(feature = "cluster"))]
pub(crate) use absent::context;
#[cfg(not(feature = "cluster"))]
use absent::stages;
#[cfg(not(feature = "cluster"))]
pub use absent::{Scheduler, SqlExecutor, start_executor, start_scheduler};
pub(crate) use cluster::Cluster;
pub use cluster::available;
#[cfg(feature = "cluster")]
pub use handles::{Scheduler, SqlExecutor};
#[cfg(feature = "cluster")]
pub use nodes::{start_executor, start_scheduler};
#[cfg(feature = "cluster")]
pub(crate) use planning::context;
#[cfg(feature = "cluster")]
use planning::stages;

use crate::engine::Engine;
use crate::limits::SqlEngine;
use crate::pruned::PrunedScan;

/// Where one query runs.
pub(crate) enum Route {
    /// Here; with why not on the cluster, when it could have been.
    Local(Option<String>),
    /// On the cluster, reading this many bytes of data files.
    Distributed(Box<Cluster>, u64),
}

/// Decides where `plan` runs.
pub(crate) async fn route(engine: &Engine, plan: &LogicalPlan) -> Route {
    let mode = engine.limits().engine;
    if mode == SqlEngine::Local {
        return Route::Local(None);
    }
    let Some(cluster) = engine.cluster() else {
        return Route::Local(
            (mode == SqlEngine::Ballista).then(|| {
                "no SQL scheduler: set [sql.ballista] scheduler in basin.toml".to_string()
            }),
        );
    };
    let (bytes, scans) = match scanned(plan) {
        Ok(found) => found,
        Err(why) => return Route::Local(Some(why)),
    };
    if scans == 0 {
        return Route::Local(None);
    }
    let threshold = engine.limits().distributed_threshold;
    if mode == SqlEngine::Auto && bytes < threshold {
        return Route::Local(Some(format!(
            "its tables hold {}, under [sql] distributed_threshold ({})",
            format_size(bytes),
            format_size(threshold)
        )));
    }
    if let Some(scheduler) = &cluster.local
        && scheduler.alive_executors().await == 0
    {
        return Route::Local(Some(
            "no SQL executor has joined the scheduler (start `basin worker`s)".into(),
        ));
    }
    Route::Distributed(Box::new(cluster), bytes)
}

/// The bytes the plan's tables hold and how many it scans; or why Ballista cannot run it.
fn scanned(plan: &LogicalPlan) -> std::result::Result<(u64, usize), String> {
    let mut bytes = 0;
    let mut scans = 0;
    let mut why = None;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = &scan.table_name;
            if matches!(name.schema(), Some("information_schema" | "pg_catalog")) {
                return Ok(TreeNodeRecursion::Continue);
            }
            let found = source_as_provider(&scan.source).ok().and_then(|p| {
                p.as_any()
                    .downcast_ref::<PrunedScan>()
                    .map(|s| s.distributable())
            });
            match found {
                Some(Ok(size)) => {
                    bytes += size;
                    scans += 1;
                }
                Some(Err(reason)) => why = Some(reason),
                None => {
                    why = Some(format!(
                        "`{name}` is not a table Ballista can read (a view of this session, \
                         a pipeline's unmerged output, or a table outside the warehouse)"
                    ))
                }
            }
            if why.is_some() {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match why {
        Some(why) => Err(why),
        None => Ok((bytes, scans)),
    }
}

/// What `EXPLAIN` adds about where the query runs: an `engine` row, and for a distributed
/// query the stages Ballista would run (the plan split at its shuffles).
pub(crate) async fn explain_rows(
    route: &Route,
    distributed: Option<(&SessionContext, &LogicalPlan)>,
) -> Result<Vec<(String, String)>> {
    let mut rows = Vec::new();
    match route {
        Route::Local(None) => rows.push(("engine".into(), "local".into())),
        Route::Local(Some(why)) => rows.push(("engine".into(), format!("local: {why}"))),
        Route::Distributed(cluster, bytes) => {
            rows.push((
                "engine".into(),
                format!(
                    "ballista, scheduler {} (tables hold {})",
                    cluster.url.trim_start_matches("http://"),
                    format_size(*bytes)
                ),
            ));
            if let Some((ctx, plan)) = distributed {
                for (i, stage) in stages(ctx, plan).await?.into_iter().enumerate() {
                    rows.push((format!("distributed_plan stage {}", i + 1), stage));
                }
            }
        }
    }
    Ok(rows)
}

/// `rows` appended to an `EXPLAIN` answer (two string columns, `plan_type` and `plan`).
pub(crate) fn append_rows(
    batches: Vec<RecordBatch>,
    rows: Vec<(String, String)>,
) -> Result<Vec<RecordBatch>> {
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok(batches);
    };
    if rows.is_empty() {
        return Ok(batches);
    }
    let (types, plans): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
    let extra = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(types)) as ArrayRef,
            Arc::new(StringArray::from(plans)) as ArrayRef,
        ],
    )
    .map_err(|e| Error::internal(format!("cannot add to the EXPLAIN answer: {e}")))?;
    Ok(batches.into_iter().chain([extra]).collect())
}
