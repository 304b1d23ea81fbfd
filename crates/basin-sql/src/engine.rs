//! The [`Engine`]: what every session of a process shares (the memory pool, spill space,
//! planning threads, the warehouse's files, the cluster it joined) and the limits it holds
//! them to. Every [`crate::Session`] is built from one.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use basin_core::{Error, ErrorKind, Result};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement;
use futures::FutureExt;

use crate::column_cache::disk::Disk;
use crate::column_cache::{ColumnCache, ColumnCacheStats};
use crate::copies;
use crate::deadline::{self, Deadline};
use crate::distributed::{Cluster, Scheduler, available};
use crate::executors::Executors;
use crate::guard::{self, Dialect, Shape, StatementLimits};
use crate::limits::{LimitCounters, STRING_VIEWS, SqlLimits};
use crate::memory::QueryPool;
use crate::planners::Planners;
use crate::result_cache::{ResultCache, ResultCacheStats};
use crate::results::RecordBatchStream;
use crate::stores::{WarehouseFiles, WarehouseOnly};
use crate::{depth, parse};

/// The memory pool, spill space and limits every session of a process shares.
#[derive(Clone)]
pub struct Engine {
    limits: SqlLimits,
    pool: Arc<GreedyMemoryPool>,
    runtime: Arc<RuntimeEnv>,
    counters: Arc<LimitCounters>,
    /// The warehouse's location (see [`WarehouseFiles::root`]).
    warehouse: Option<String>,
    /// Where queries run besides this process (`[sql.ballista]`), once the node has joined.
    cluster: Arc<RwLock<Option<Cluster>>>,
    /// The threads statements are parsed and planned on.
    planners: Planners,
    /// The threads plans run on, apart from the runtime that answers requests.
    executors: Executors,
    /// Answers kept for the next identical query (`[sql] result_cache`).
    answers: Arc<ResultCache>,
    /// Columns kept decoded for the next scan of the same files (`[sql] column_cache`).
    columns: Arc<ColumnCache>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Engine {
    /// An engine whose sessions read no files but the warehouse's, and those read only.
    pub fn new(limits: SqlLimits, warehouse: WarehouseFiles) -> Result<Self> {
        let pool = Arc::new(GreedyMemoryPool::new(limits.memory_limit as usize));
        // The folder is made when missing; where it cannot be (a read-only lakehouse),
        // queries spill to the system's temporary folder instead, and say so.
        let disk = match &limits.spill_dir {
            Some(dir) => match std::fs::create_dir_all(dir) {
                Ok(()) => DiskManagerMode::Directories(vec![dir.clone()]),
                Err(e) => {
                    tracing::warn!(
                        "cannot make the spill folder {}: {e}; queries spill to the system's \
                         temporary folder",
                        dir.display()
                    );
                    DiskManagerMode::OsTmpDirectory
                }
            },
            None => DiskManagerMode::OsTmpDirectory,
        };
        let counters = Arc::<LimitCounters>::default();
        let stores = WarehouseOnly::new(&warehouse, limits.s3_reads, counters.clone());
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool.clone())
            .with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(disk)
                    .with_max_temp_directory_size(limits.spill_limit),
            )
            .with_object_store_registry(Arc::new(stores))
            .build_arc()
            .map_err(|e| Error::internal("cannot set up the SQL engine").with_source(e))?;
        Ok(Self {
            pool,
            runtime,
            counters,
            warehouse: warehouse.root(),
            cluster: Arc::default(),
            planners: Planners::start(
                limits.planner_threads,
                limits.planner_stack,
                limits.query_nice,
            )?,
            executors: Executors::new(limits.query_threads, limits.query_nice),
            answers: Arc::new(ResultCache::new(limits.result_cache)),
            columns: Arc::new(
                ColumnCache::new(limits.column_cache).with_disk(
                    limits
                        .column_dir
                        .as_deref()
                        .and_then(|dir| Disk::open(dir, limits.column_cache_disk)),
                ),
            ),
            limits,
        })
    }

    /// Refuses a statement's text past `[sql] max_statement_size` at once, before anything
    /// reads it (counted as [`Engine::guard`]'s refusals are).
    pub fn check_size(&self, sql: &str) -> Result<()> {
        let limits = StatementLimits {
            max_depth: usize::MAX,
            max_joins: usize::MAX,
            ..self.limits.statement
        };
        if sql.len() <= limits.max_size {
            return Ok(());
        }
        self.guard_with(sql, Dialect::Basin, &limits).map(|_| ())
    }

    /// Checks a statement's text against `[sql]`'s bounds before it is parsed (a refusal
    /// is counted by the setting's name). It reads the whole text: run it on a planning
    /// thread.
    pub fn guard(&self, sql: &str, dialect: Dialect) -> Result<Shape> {
        self.guard_with(sql, dialect, &self.limits.statement)
    }

    fn guard_with(&self, sql: &str, dialect: Dialect, limits: &StatementLimits) -> Result<Shape> {
        guard::check_bound(sql, dialect, limits).map_err(|(bound, e)| {
            self.counters.refuse(bound.setting());
            e
        })
    }

    /// Parses a script `guard` let through (and measured as `shape`) within its parse budget
    /// ([`crate::parse`]); run it on a planning thread.
    pub(crate) fn parse(&self, sql: &str, shape: &Shape) -> Result<VecDeque<Statement>> {
        parse::parse_basin(sql, shape, &self.limits.statement).inspect_err(|e| {
            if e.kind() == ErrorKind::Limit {
                self.counters.refuse("parse_steps_per_token");
            }
        })
    }

    /// Whether parsing `sql` in the Postgres dialect stays within its budget (the Postgres
    /// door parses it again its own way after); run it on a planning thread.
    pub fn check_postgres_parse(&self, sql: &str, shape: &Shape) -> Result<()> {
        parse::check_postgres(sql, shape, &self.limits.statement).inspect_err(|_| {
            self.counters.refuse("parse_steps_per_token");
        })
    }

    /// Refuses a statement whose WITH queries, copied into each place that reads them, would
    /// make a plan past `[sql] max_plan_nodes`, before DataFusion plans it ([`crate::copies`]).
    pub(crate) fn check_copies(
        &self,
        statement: &datafusion::sql::parser::Statement,
    ) -> Result<()> {
        copies::check(statement, self.limits.statement.max_plan_nodes)
            .inspect_err(|_| self.counters.refuse("max_plan_nodes"))
    }

    /// Refuses a plan of more than `[sql] max_plan_nodes` operators once copied out, or
    /// deeper than `max_expression_depth` (counted as the guard's refusals are).
    pub(crate) fn check_plan_size(&self, plan: &LogicalPlan) -> Result<()> {
        let limits = &self.limits.statement;
        depth::check(plan, limits.max_plan_nodes, limits.max_depth).map_err(|(setting, e)| {
            self.counters.refuse(setting);
            e
        })
    }

    /// Starts `plan` on the threads that run queries (see [`Executors`]).
    pub(crate) fn execute(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        context: Arc<datafusion::execution::TaskContext>,
    ) -> Result<
        std::result::Result<
            datafusion::execution::SendableRecordBatchStream,
            datafusion::error::DataFusionError,
        >,
    > {
        self.executors.execute(plan, context)
    }

    /// Runs `work` (parsing, planning, building a plan's streams) on one of the engine's
    /// planning threads, whose stacks hold what the statement bounds allow; waits for a free
    /// one first. Put a time limit around it: the wait counts too.
    /// `work` is boxed here, before anything awaits it: held by value in this call's future,
    /// a script's whole future sat inside every caller's, and a debug build's 2 MiB test
    /// thread overflowed so (`tpch_queries_on_ballista_match_duckdb`).
    pub fn on_planner<T, F>(&self, work: F) -> impl Future<Output = Result<T>> + Send + '_
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.planners.run(work.boxed())
    }

    /// `work`, stopped at `deadline` (when a statement's time limit runs out, and that limit)
    /// with the timeout error, counted as a query's.
    pub async fn within<T>(
        &self,
        deadline: Option<Deadline>,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        deadline::within(deadline, &self.counters, work).await
    }

    /// `batches`, ended with the timeout error at `deadline` whether or not anyone reads
    /// them (see [`deadline::until`]).
    pub(crate) fn until(
        &self,
        batches: RecordBatchStream,
        deadline: Deadline,
    ) -> RecordBatchStream {
        let (at, limit) = deadline;
        deadline::until(batches, at, limit, self.counters.clone())
    }

    /// Planning threads, and how many are busy now.
    pub fn planners(&self) -> (usize, usize) {
        (self.planners.threads(), self.planners.busy())
    }

    /// Query plans running on the query threads now, and plans stopped so far because their
    /// reader went away before the answer ended (a client that left).
    pub fn plans(&self) -> (u64, u64) {
        self.executors.plans()
    }

    /// Whether DataFusion's own Parquet reader can open a table whose metadata is at
    /// `location`: a table inside the warehouse.
    pub(crate) fn reads(&self, location: &str) -> bool {
        let location = location.strip_prefix("file://").unwrap_or(location);
        self.warehouse.as_deref().is_some_and(|root| {
            location
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// Whether table scans read strings as `Utf8View`: DataFusion's
    /// `execution.parquet.schema_force_view_types` in `[sql.datafusion]`, else `STRING_VIEWS`.
    pub fn string_views(&self) -> bool {
        self.limits()
            .options
            .iter()
            .rev()
            .find(|(k, _)| k == "datafusion.execution.parquet.schema_force_view_types")
            .map_or(STRING_VIEWS, |(_, v)| v.eq_ignore_ascii_case("true"))
    }

    pub fn limits(&self) -> &SqlLimits {
        &self.limits
    }

    /// Bytes all queries hold now.
    pub fn memory_reserved(&self) -> u64 {
        self.pool.reserved() as u64
    }

    pub fn counters(&self) -> &LimitCounters {
        &self.counters
    }

    /// What the result cache holds and has done (`[sql] result_cache`).
    pub fn result_cache(&self) -> ResultCacheStats {
        self.answers.stats()
    }

    pub(crate) fn answers(&self) -> &Arc<ResultCache> {
        &self.answers
    }

    /// What the column cache holds and has done (`[sql] column_cache`).
    pub fn column_cache(&self) -> ColumnCacheStats {
        self.columns.stats()
    }

    /// Whether the columns scans decode are kept on disk for the next process (`[sql]
    /// column_cache_disk`): a one-query process (`basin query`) then reads them, and keeps
    /// those it decodes by waiting for [`Engine::settle_columns`] before it exits.
    pub fn keeps_columns_on_disk(&self) -> bool {
        self.columns.on_disk()
    }

    /// Waits for the columns scans started to decode to be kept (on disk too).
    pub async fn settle_columns(&self) {
        self.columns.settled().await;
    }

    pub(crate) fn columns(&self) -> &Arc<ColumnCache> {
        &self.columns
    }

    /// The runtime of one session: the shared spill space and files, and a memory pool that
    /// holds the session's queries to their share of the shared pool.
    pub(crate) fn session_runtime(&self) -> Arc<RuntimeEnv> {
        // Spill space, caches and the file registry are shared; the pool is the session's.
        let mut runtime = RuntimeEnv::clone(&self.runtime);
        runtime.memory_pool = Arc::new(QueryPool::new(
            self.pool.clone(),
            self.limits.query_memory_limit as usize,
            self.limits.memory_limit as usize,
        ));
        Arc::new(runtime)
    }

    /// Counts a query stopped by the memory limit; `e` says which.
    pub(crate) fn out_of_memory(&self, e: Error) -> Error {
        self.counters.out_of_memory.fetch_add(1, Ordering::Relaxed);
        e
    }

    /// Sends this engine's distributed queries to the scheduler at `scheduler`
    /// (`HOST:PORT`), with the cluster's `token`; fails in a build without distributed SQL.
    pub fn join_cluster(&self, scheduler: &str, token: &str) -> Result<()> {
        available()?;
        *self.cluster.write().expect("cluster lock") = Some(Cluster::remote(scheduler, token));
        Ok(())
    }

    /// Sends this engine's distributed queries to `scheduler`, which runs in this process.
    pub fn use_scheduler(&self, scheduler: &Scheduler, token: &str) {
        *self.cluster.write().expect("cluster lock") = Some(Cluster::local(scheduler, token));
    }

    /// The token this engine presents to the cluster's scheduler, once it has joined one.
    pub fn cluster_token(&self) -> Option<String> {
        self.cluster().map(|c| c.token().to_string())
    }

    /// Runs every query of this engine here from now on.
    pub fn leave_cluster(&self) {
        *self.cluster.write().expect("cluster lock") = None;
    }

    /// The cluster this engine sends distributed queries to, once it has joined one.
    pub(crate) fn cluster(&self) -> Option<Cluster> {
        self.cluster.read().expect("cluster lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::memory_pool::MemoryConsumer;

    use super::*;
    use crate::limits::SqlLimits;

    #[test]
    fn a_query_share_stops_at_its_limit_and_frees_the_shared_pool() {
        let engine = Engine::new(
            SqlLimits {
                memory_limit: 1000,
                query_memory_limit: 600,
                ..SqlLimits::default()
            },
            WarehouseFiles::None,
        )
        .unwrap();
        let (a, b) = (engine.session_runtime(), engine.session_runtime());
        let first = MemoryConsumer::new("first").register(&a.memory_pool);
        let second = MemoryConsumer::new("second").register(&b.memory_pool);
        first.try_grow(500).unwrap();
        let past_share = first.try_grow(200).unwrap_err().to_string();
        assert!(past_share.contains("query_memory_limit"), "{past_share}");
        second.try_grow(400).unwrap();
        let past_total = second.try_grow(150).unwrap_err().to_string();
        assert!(past_total.contains("[sql] memory_limit"), "{past_total}");
        assert_eq!(engine.memory_reserved(), 900);
        drop(first);
        assert_eq!(engine.memory_reserved(), 400);
        second.try_grow(150).unwrap();
    }
}
