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

mod codec;
mod nodes;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use basin_core::units::format_size;
use basin_core::{Error, Result};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::displayable;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;

pub use nodes::{Scheduler, SqlExecutor, start_executor, start_scheduler};

use crate::limits::Engine;
use crate::provider::RefCatalog;
use crate::pruned::PrunedScan;

/// Where queries run (`[sql] engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqlEngine {
    /// Always in the process that received the query.
    Local,
    /// On the cluster's executors, whenever the query can run there.
    Ballista,
    /// On the executors when the query's tables hold at least `[sql] distributed_threshold`.
    #[default]
    Auto,
}

impl FromStr for SqlEngine {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "local" => Ok(Self::Local),
            "ballista" => Ok(Self::Ballista),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "`{other}` is not an engine: `local`, `ballista` or `auto`"
            )),
        }
    }
}

impl fmt::Display for SqlEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::Ballista => "ballista",
            Self::Auto => "auto",
        })
    }
}

/// `[sql.ballista]`: the cluster's scheduler and this node's executor.
#[derive(Clone, Debug)]
pub struct BallistaSettings {
    /// Where every node reaches the scheduler (`HOST:PORT`); `basin serve` runs it there.
    /// `None`: no distributed SQL.
    pub scheduler: Option<String>,
    /// Where a worker's executor serves its stage outputs (`HOST:PORT`, port 0: any).
    pub executor_listen: String,
    /// The host other nodes dial to reach this node's executor (default: the listen host).
    pub executor_advertise: Option<String>,
    /// Tasks an executor runs at once (default: the machine's cores).
    pub executor_slots: usize,
    /// An executor silent this long is lost: the scheduler runs its tasks elsewhere (or
    /// fails their queries) and stops counting it.
    pub executor_timeout: std::time::Duration,
}

impl Default for BallistaSettings {
    fn default() -> Self {
        Self {
            scheduler: None,
            executor_listen: "127.0.0.1:0".into(),
            executor_advertise: None,
            executor_slots: std::thread::available_parallelism().map_or(2, usize::from),
            executor_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// How this node reaches the cluster's scheduler.
#[derive(Clone, Debug)]
pub(crate) struct Cluster {
    /// `http://HOST:PORT`.
    url: String,
    token: String,
    /// The scheduler, when this process runs it: it knows whether executors are there.
    local: Option<Scheduler>,
}

impl Engine {
    /// Sends this engine's distributed queries to the scheduler at `scheduler`
    /// (`HOST:PORT`), with the cluster's `token`.
    pub fn join_cluster(&self, scheduler: &str, token: &str) {
        *self.cluster.write().expect("cluster lock") = Some(Cluster {
            url: format!("http://{scheduler}"),
            token: token.to_string(),
            local: None,
        });
    }

    /// Sends this engine's distributed queries to `scheduler`, which runs in this process.
    pub fn use_scheduler(&self, scheduler: &Scheduler, token: &str) {
        *self.cluster.write().expect("cluster lock") = Some(Cluster {
            url: format!("http://{}", scheduler.addr()),
            token: token.to_string(),
            local: Some(scheduler.clone()),
        });
    }

    /// The token this engine presents to the cluster's scheduler, once it has joined one.
    pub fn cluster_token(&self) -> Option<String> {
        self.cluster().map(|c| c.token)
    }

    /// Runs every query of this engine here from now on.
    pub fn leave_cluster(&self) {
        *self.cluster.write().expect("cluster lock") = None;
    }

    pub(crate) fn cluster(&self) -> Option<Cluster> {
        self.cluster.read().expect("cluster lock").clone()
    }
}

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

/// A session context whose queries run on `cluster`: the same tables as `catalog`, read
/// without string views (Ballista 53 sends no view arrays between executors).
pub(crate) fn context(
    engine: &Engine,
    catalog: &RefCatalog,
    cluster: &Cluster,
    local: &SessionContext,
) -> Result<SessionContext> {
    let options = local.state().config().options().clone();
    let mut config = SessionConfig::from(options.as_ref().clone())
        .with_ballista_logical_extension_codec(Arc::new(codec::BasinCodec::client()))
        .with_ballista_grpc_metadata(HashMap::from([(
            nodes::TOKEN_HEADER.to_string(),
            cluster.token.clone(),
        )]));
    config = config.set_bool(
        "datafusion.execution.parquet.schema_force_view_types",
        false,
    );
    let state = crate::rules::add(
        SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(engine.session_runtime())
            .with_default_features()
            .with_table_factories(HashMap::new()),
    )
    .build()
    .upgrade_for_ballista(cluster.url.clone())
    .map_err(|e| Error::internal(format!("cannot set up a distributed session: {e}")))?;
    let ctx = SessionContext::new_with_state(state);
    ctx.register_catalog(crate::CATALOG, Arc::new(catalog.with_string_views(false)));
    Ok(ctx)
}

/// What an error says when a connection to another node failed or broke: refused before
/// the query's data moved, or (a Flight stream from an executor killed mid-answer) cut while
/// it did, which gRPC reports as an h2 body read failing on a broken pipe or a reset.
const CONNECTION_LOST: &[&str] = &[
    "transport error",
    "tcp connect",
    "Connection refused",
    "Unavailable",
    "h2 protocol error",
    "BrokenPipe",
    "broken pipe",
    "Connection reset",
];

/// What the scheduler says when a task failed because the executor holding its input went
/// away: its shuffle files can no longer be fetched.
const EXECUTOR_LOST: &[&str] = &[
    "FetchFailed",
    "FetchPartitionError",
    "fetch partition",
    "ExecutorLost",
];

impl Cluster {
    /// `e`, said as the scheduler's when it is about reaching the scheduler.
    pub(crate) fn explain_error(&self, e: Error) -> Error {
        let text = e.to_string();
        let address = self.url.trim_start_matches("http://");
        let says = |words: &[&str]| words.iter().any(|w| text.contains(w));
        let executor_lost = says(EXECUTOR_LOST);
        if text.contains("Unauthenticated") || text.contains("needs its token") {
            Error::invalid(format!(
                "the SQL scheduler at {address} refused this node's token"
            ))
            .with_hint("the nodes of a cluster share one catalog; check this node's catalog is the scheduler's")
        } else if !executor_lost && !says(CONNECTION_LOST) {
            e
        } else if executor_lost || !text.contains(address) {
            // Another node's address: an executor went away while the query ran.
            Error::io(format!(
                "an SQL executor stopped while the query ran (a worker was lost): {text}"
            ))
            .with_hint(
                "run the query again: the scheduler gives its work to the executors still there",
            )
        } else {
            Error::io(format!("the SQL scheduler at {address} did not answer: {text}")).with_hint(
                "start `basin serve` on the node [sql.ballista] scheduler names, or set [sql] engine = \"local\"",
            )
        }
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

/// The stages of `plan` as Ballista's planner cuts them.
async fn stages(ctx: &SessionContext, plan: &LogicalPlan) -> Result<Vec<String>> {
    use ballista_scheduler::planner::{DefaultDistributedPlanner, DistributedPlanner};
    let state = ctx.state();
    let internal = |e: &dyn fmt::Display| Error::internal(format!("cannot plan the stages: {e}"));
    let optimized = state.optimize(plan).map_err(|e| internal(&e))?;
    let physical = DefaultPhysicalPlanner::default()
        .create_physical_plan(&optimized, &state)
        .await
        .map_err(|e| internal(&e))?;
    let stages = DefaultDistributedPlanner::new()
        .plan_query_stages("explain", physical, state.config().options())
        .map_err(|e| internal(&e))?;
    Ok(stages
        .iter()
        .map(|stage| {
            displayable(stage.as_ref() as &dyn datafusion::physical_plan::ExecutionPlan)
                .indent(false)
                .to_string()
        })
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster {
            url: "http://127.0.0.1:50050".into(),
            token: String::new(),
            local: None,
        }
    }

    #[test]
    fn an_executor_killed_mid_answer_is_a_lost_worker_with_a_hint() {
        // What a Flight stream from a SIGKILLed executor reported in CI.
        let cut = Error::invalid(
            "Arrow error: External error: code: 'Unknown error', message: \"h2 protocol error: \
             error reading a body from connection\", source: hyper::Error(Body, Error { kind: \
             Io(Custom { kind: BrokenPipe, error: \"stream closed because of a broken pipe\" }) })",
        );
        let e = cluster().explain_error(cut);
        assert!(e.to_string().contains("a worker was lost"), "{e}");
        assert!(
            e.hint
                .as_deref()
                .is_some_and(|h| h.contains("run the query again")),
            "{e:?}"
        );

        let refused = Error::invalid(
            "GrpcConnectionError(\"Error connecting to Ballista scheduler or executor at \
             http://127.0.0.1:40787: tcp connect error: Connection refused\")",
        );
        assert!(
            cluster()
                .explain_error(refused)
                .to_string()
                .contains("a worker was lost")
        );

        let stage = Error::invalid(
            "Job AbC failed: Job failed due to stage 2 failed: Stage 2 has failed 4 times, most \
             recent failure reason: FetchPartitionError(\"exec-1\", 1, 0, \"gone\")",
        );
        assert!(
            cluster()
                .explain_error(stage)
                .to_string()
                .contains("a worker was lost")
        );
    }

    #[test]
    fn the_scheduler_unreachable_and_other_errors_keep_their_own_words() {
        let down = Error::invalid(
            "transport error connecting to http://127.0.0.1:50050: Connection refused",
        );
        let e = cluster().explain_error(down);
        assert!(e.to_string().contains("did not answer"), "{e}");

        let wrong = Error::invalid("column \"nope\" not found");
        assert_eq!(
            cluster().explain_error(wrong).to_string(),
            "column \"nope\" not found"
        );
    }
}
