//! What one process's SQL may use: a memory pool shared by every query with a share per
//! query (operators that can spill to disk do), a time limit per query, and no files but the
//! warehouse's. An [`Engine`] holds them; every [`crate::Session`] is built from one.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use basin_core::units::format_size;
use basin_core::{Error, ErrorKind, Result};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use crate::stores::{WarehouseFiles, WarehouseOnly};

/// Whether scans read strings as `Utf8View` unless `[sql.datafusion]` says otherwise.
pub const STRING_VIEWS: bool = true;

/// The limits of SQL in one process (`[sql]` in basin.toml).
#[derive(Clone, Debug)]
pub struct SqlLimits {
    /// Memory all queries together may hold (`[sql] memory_limit`).
    pub memory_limit: u64,
    /// Memory one query may hold (`[sql] query_memory_limit`); sorts, aggregations and
    /// joins spill to disk past it where they can, others fail with a clear error.
    pub query_memory_limit: u64,
    /// How long one query may run (`[sql] query_timeout`); `None`: no limit.
    pub query_timeout: Option<Duration>,
    /// Where spilled data goes (`[sql] spill_dir`; basin.toml's default: `.basin/spill`; here,
    /// unset: the system's temporary folder).
    pub spill_dir: Option<PathBuf>,
    /// How much spilled data all queries together may keep on disk (`[sql] spill_limit`;
    /// basin.toml's default: a quarter of the free space there, at most 100 GiB).
    pub spill_limit: u64,
    /// DataFusion options every session starts with (`[sql.datafusion]`), checked by
    /// `set_option`.
    pub options: Vec<(String, String)>,
    /// Where queries run (`[sql] engine`).
    pub engine: crate::SqlEngine,
    /// With `engine = "auto"`: the data (bytes of the tables' live files) from which a query
    /// goes to the cluster (`[sql] distributed_threshold`).
    pub distributed_threshold: u64,
    /// The cluster's scheduler and this node's executor (`[sql.ballista]`).
    pub ballista: crate::BallistaSettings,
    /// How many loaded tables (parsed metadata, and the manifests read since) a process
    /// keeps for the next query (`[sql] table_cache`); 0 keeps none.
    pub table_cache: u64,
    /// Bounds on a statement's text, and on its plan's depth (`[sql] max_statement_size`,
    /// `max_nesting`, `max_expression_depth`, `max_joins`).
    pub statement: crate::guard::StatementLimits,
    /// Statements parsed and planned at once (`[sql] planner_threads`).
    pub planner_threads: usize,
    /// The stack of each planning thread (`[sql] planner_stack`).
    pub planner_stack: usize,
}

impl SqlLimits {
    /// Adds a DataFusion option (`datafusion.optimizer....`), after DataFusion accepts it.
    pub fn set_option(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        let mut options = datafusion::config::ConfigOptions::new();
        options.set(key, value).map_err(|e| e.to_string())?;
        self.options.push((key.to_string(), value.to_string()));
        Ok(())
    }
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            memory_limit: 4 << 30,
            query_memory_limit: 1 << 30,
            query_timeout: Some(Duration::from_secs(300)),
            spill_dir: None,
            spill_limit: 100 << 30,
            options: Vec::new(),
            engine: crate::SqlEngine::default(),
            distributed_threshold: 1 << 30,
            table_cache: basin_table::LOADED_TABLES,
            ballista: crate::BallistaSettings::default(),
            statement: crate::guard::StatementLimits::default(),
            planner_threads: crate::planners::default_threads(),
            planner_stack: crate::planners::DEFAULT_STACK,
        }
    }
}

/// Counters of queries stopped by a limit, for metrics.
#[derive(Debug, Default)]
pub struct LimitCounters {
    pub timed_out: AtomicU64,
    pub out_of_memory: AtomicU64,
    /// Queries sent to the cluster's executors.
    pub distributed_queries: AtomicU64,
    /// Tasks this process's SQL executor ran.
    pub executor_tasks: AtomicU64,
    /// Statements refused by a bound on their text or plan, by the setting's name.
    refused: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl LimitCounters {
    /// Statements refused so far, by the setting that refused them.
    pub fn refused(&self) -> Vec<(&'static str, u64)> {
        let refused = self.refused.lock().expect("limit counters");
        refused.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub(crate) fn refuse(&self, setting: &'static str) {
        *self
            .refused
            .lock()
            .expect("limit counters")
            .entry(setting)
            .or_default() += 1;
    }
}

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
    pub(crate) cluster: Arc<std::sync::RwLock<Option<crate::distributed::Cluster>>>,
    /// The threads statements are parsed and planned on.
    planners: crate::planners::Planners,
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
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool.clone())
            .with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(disk)
                    .with_max_temp_directory_size(limits.spill_limit),
            )
            .with_object_store_registry(Arc::new(WarehouseOnly::new(&warehouse)))
            .build_arc()
            .map_err(|e| Error::internal(format!("cannot set up the SQL engine: {e}")))?;
        Ok(Self {
            pool,
            runtime,
            counters: Arc::default(),
            warehouse: warehouse.root(),
            cluster: Arc::default(),
            planners: crate::planners::Planners::start(
                limits.planner_threads,
                limits.planner_stack,
            )?,
            limits,
        })
    }

    /// Refuses a statement's text past `[sql] max_statement_size` at once, before anything
    /// reads it (counted as [`Engine::guard`]'s refusals are).
    pub fn check_size(&self, sql: &str) -> Result<()> {
        let limits = crate::guard::StatementLimits {
            max_depth: usize::MAX,
            max_joins: usize::MAX,
            ..self.limits.statement
        };
        if sql.len() <= limits.max_size {
            return Ok(());
        }
        self.guard_with(sql, crate::guard::Dialect::Basin, &limits)
            .map(|_| ())
    }

    /// Checks a statement's text against `[sql]`'s bounds before it is parsed (a refusal
    /// is counted by the setting's name). It reads the whole text: run it on a planning
    /// thread.
    pub fn guard(&self, sql: &str, dialect: crate::guard::Dialect) -> Result<crate::guard::Shape> {
        self.guard_with(sql, dialect, &self.limits.statement)
    }

    fn guard_with(
        &self,
        sql: &str,
        dialect: crate::guard::Dialect,
        limits: &crate::guard::StatementLimits,
    ) -> Result<crate::guard::Shape> {
        crate::guard::check_bound(sql, dialect, limits).map_err(|(bound, e)| {
            self.counters.refuse(bound.setting());
            e
        })
    }

    /// Parses a script `guard` let through (and measured as `shape`) within its parse budget
    /// ([`crate::parse`]); run it on a planning thread.
    pub(crate) fn parse(
        &self,
        sql: &str,
        shape: &crate::guard::Shape,
    ) -> Result<std::collections::VecDeque<datafusion::sql::parser::Statement>> {
        crate::parse::parse_basin(sql, shape, &self.limits.statement).inspect_err(|e| {
            if e.kind() == ErrorKind::Limit {
                self.counters.refuse("parse_steps_per_token");
            }
        })
    }

    /// Whether parsing `sql` in the Postgres dialect stays within its budget (the Postgres
    /// door parses it again its own way after); run it on a planning thread.
    pub fn check_postgres_parse(&self, sql: &str, shape: &crate::guard::Shape) -> Result<()> {
        crate::parse::check_postgres(sql, shape, &self.limits.statement).inspect_err(|_| {
            self.counters.refuse("parse_steps_per_token");
        })
    }

    /// Refuses a plan deeper than `[sql] max_expression_depth` (counted as the guard's
    /// refusals are).
    pub(crate) fn check_depth(&self, plan: &datafusion::logical_expr::LogicalPlan) -> Result<()> {
        crate::depth::check(plan, self.limits.statement.max_depth).inspect_err(|_| {
            self.counters.refuse(crate::guard::Bound::Depth.setting());
        })
    }

    /// Runs `work` (parsing, planning, building a plan's streams) on one of the engine's
    /// planning threads, whose stacks hold what the statement bounds allow; waits for a free
    /// one first. Put a time limit around it: the wait counts too.
    pub async fn on_planner<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        self.planners.run(work).await
    }

    /// `work`, stopped at `deadline` (when a statement's time limit runs out, and that limit)
    /// with the timeout error, counted as a query's.
    pub async fn within<T>(
        &self,
        deadline: Option<crate::Deadline>,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match deadline {
            Some((at, limit)) if tokio::time::Instant::now() >= at => Err(self.timed_out(limit)),
            Some((at, limit)) => tokio::time::timeout_at(at, work)
                .await
                .unwrap_or_else(|_| Err(self.timed_out(limit))),
            None => work.await,
        }
    }

    /// Planning threads, and how many are busy now.
    pub fn planners(&self) -> (usize, usize) {
        (self.planners.threads(), self.planners.busy())
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

    /// The runtime of one session: the shared spill space and files, and a memory pool that
    /// holds the session's queries to their share of the shared pool.
    pub(crate) fn session_runtime(&self) -> Arc<RuntimeEnv> {
        // Spill space, caches and the file registry are shared; the pool is the session's.
        let mut runtime = RuntimeEnv::clone(&self.runtime);
        runtime.memory_pool = Arc::new(QueryPool {
            shared: self.pool.clone(),
            limit: self.limits.query_memory_limit as usize,
            total: self.limits.memory_limit as usize,
            used: AtomicUsize::new(0),
        });
        Arc::new(runtime)
    }

    /// The error for a query stopped at its time limit (and counts it).
    pub(crate) fn timed_out(&self, limit: Duration) -> Error {
        self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        Error::new(
            ErrorKind::Timeout,
            format!(
                "the query ran longer than its time limit of {}",
                seconds(limit)
            ),
        )
        .with_hint(
            "narrow it (a filter, a LIMIT, fewer columns), or raise `[sql] query_timeout` in \
             basin.toml (Postgres clients: SET statement_timeout)",
        )
    }

    /// Counts a query stopped by the memory limit; `e` says which.
    pub(crate) fn out_of_memory(&self, e: Error) -> Error {
        self.counters.out_of_memory.fetch_add(1, Ordering::Relaxed);
        e
    }
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.3}s")
    }
}

/// One session's share of the shared pool. DataFusion's pools each have one limit; a pool
/// inside a pool (a query's share of the server's memory) is not among them, so Basin keeps
/// this small one.
#[derive(Debug)]
struct QueryPool {
    shared: Arc<GreedyMemoryPool>,
    limit: usize,
    total: usize,
    used: AtomicUsize,
}

impl MemoryPool for QueryPool {
    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.shared.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.shared.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        let grown = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + additional <= self.limit).then_some(used + additional)
            });
        if grown.is_err() {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} needs {} more, past the query's memory limit of {} (`[sql] query_memory_limit`)",
                reservation.consumer().name(),
                format_size(additional as u64),
                format_size(self.limit as u64),
            )));
        }
        if self.shared.try_grow(reservation, additional).is_err() {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} needs {} more, but queries together hold the server's memory limit of {} \
                 (`[sql] memory_limit`)",
                reservation.consumer().name(),
                format_size(additional as u64),
                format_size(self.total as u64),
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
