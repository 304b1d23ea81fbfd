//! A [`Session`]: DataFusion over the tables of one ref, within an [`Engine`]'s limits. It
//! runs scripts and single queries: each statement is bounded ([`crate::guard`]), parsed
//! within its budget, checked by the statement policy ([`crate::policy`]), planned on a
//! planning thread and run here or on the cluster ([`crate::distributed`]), within its time
//! limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use basin_catalog::Resolved;
use basin_core::{Error, ErrorKind, Result, suggest};
use basin_table::Tables;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement;
use futures::StreamExt;

use crate::changes::{FUNCTION, Feeds, TableChangesFunction};
use crate::deadline::Deadline;
use crate::distributed::{self, Route};
use crate::engine::Engine;
use crate::errors::{NamespaceOption, sql_error};
use crate::guard::{Dialect, Shape};
use crate::provider::{CATALOG, RefCatalog};
use crate::results::{QueryResult, RecordBatchStream, Running, bytes_scanned, collect};
use crate::{conjunctions, join_pruning, not_in, policy, reserve, rules, view_buffers};

/// DataFusion over the tables of one ref, within an engine's limits.
#[derive(Clone)]
pub struct Session {
    ctx: SessionContext,
    catalog: Arc<RefCatalog>,
    /// The `table_changes` calls of this session's statements, resolved before planning.
    feeds: Arc<Feeds>,
    engine: Engine,
    option: NamespaceOption,
}

/// DataFusion options Basin sets unlike DataFusion's defaults; `[sql.datafusion]` overrides
/// them. A join side of up to 32 MiB or two million rows is built once and shared by every
/// partition (`CollectLeft`), instead of both sides being repartitioned by hash: at 8 MiB and
/// a million rows (DataFusion's: 1 MiB, 128k) TPC-H at scale 1 took 2 to 13% less time over
/// three A/B runs on 2 cores, and 32 MiB took another 2.5% (q18 10-18%) in two more
/// (`bench/run.sh --tpch-ab`, docs/benchmarks/sql.md). Larger sides are still built in parallel.
/// A join whose build side's keys span fewer than 8M values looks them up in an array indexed
/// by key (4 bytes a value: at most 32 MiB, like the shared build side above, reserved from
/// the query's memory) instead of a hash table, however sparse (DataFusion's: a span under
/// 1,024, or 15% of it filled): q17's 200 filtered parts over a span of 200,000 keys took 15%
/// less time, q11's 420 suppliers 5-20%; raised from 1M to 8M, so that filtered orders join
/// by array too, the 22 queries took 5-6% less (q04 14-26%, q21 19%) in two A/B runs.
const DATAFUSION_DEFAULTS: [(&str, &str); 3] = [
    (
        "datafusion.optimizer.hash_join_single_partition_threshold",
        "33554432",
    ),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold_rows",
        "2097152",
    ),
    (
        "datafusion.execution.perfect_hash_join_small_build_threshold",
        "8388608",
    ),
];

impl Session {
    /// A session over the tables at `at`, within `engine`'s limits. Unqualified table names
    /// resolve in `namespace`.
    pub async fn new(
        engine: &Engine,
        tables: &Tables,
        at: &Resolved,
        namespace: Option<&str>,
    ) -> Result<Self> {
        Self::with_strings(engine, tables, at, namespace, engine.string_views()).await
    }

    /// A session whose table scans read strings as `Utf8` (not `Utf8View`, whatever the
    /// settings say): for results written out as Arrow for others to read, a function's
    /// inputs, which would otherwise be cast back to `Utf8` value by value after the scan.
    pub async fn plain_strings(
        engine: &Engine,
        tables: &Tables,
        at: &Resolved,
        namespace: Option<&str>,
    ) -> Result<Self> {
        Self::with_strings(engine, tables, at, namespace, false).await
    }

    async fn with_strings(
        engine: &Engine,
        tables: &Tables,
        at: &Resolved,
        namespace: Option<&str>,
        string_views: bool,
    ) -> Result<Self> {
        let catalog = Arc::new(RefCatalog::load(engine, tables.clone(), at, string_views).await?);
        let default_schema = namespace.unwrap_or("default");
        if namespace.is_some() && !catalog.has_namespace(default_schema) {
            let names = catalog.namespace_names();
            let hint = match suggest(default_schema, names.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("namespaces on `{}`: {}", at.spec, names.join(", ")),
            };
            return Err(Error::not_found(format!(
                "namespace `{default_schema}` does not exist on `{}`",
                at.spec
            ))
            .with_hint(hint));
        }
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, default_schema)
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false);
        // Basin's own choices (issue #18's A/B, docs/benchmarks/sql.md), then the user's.
        for (key, value) in DATAFUSION_DEFAULTS {
            config = config.set_str(key, value);
        }
        for (key, value) in &engine.limits().options {
            // Checked when the settings were read.
            config = config.set_str(key, value);
        }
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = string_views;
        // No table factories: `CREATE EXTERNAL TABLE` has nothing to build, even if it got
        // past the statement policy; files come only from the engine's warehouse store.
        let runtime = engine.session_runtime();
        // After type coercion, before the optimizer folds constants (a local session's only:
        // a distributed query is planned again in a session of its own).
        let reserve = Arc::new(reserve::Reserve::new(runtime.memory_pool.clone()));
        let state = rules::add(
            SessionStateBuilder::new()
                .with_config(config)
                .with_runtime_env(runtime)
                .with_default_features()
                .with_table_factories(HashMap::new()),
        )
        .with_analyzer_rule(reserve)
        .with_physical_optimizer_rule(Arc::new(not_in::NotInFromTheSubquery))
        .with_physical_optimizer_rule(Arc::new(view_buffers::CompactBuildSideViews))
        .with_physical_optimizer_rule(Arc::new(conjunctions::RegroupConjunctions))
        .with_physical_optimizer_rule(Arc::new(join_pruning::PruneByJoinKeys))
        .build();
        let ctx = SessionContext::new_with_state(state);
        if !catalog.has_namespace(default_schema) {
            // Somewhere for a script's views when no namespace is named (an empty lakehouse).
            use datafusion::catalog::CatalogProvider;
            catalog
                .register_schema(
                    default_schema,
                    Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
                )
                .map_err(|e| {
                    Error::internal(format!("cannot add the `{default_schema}` schema: {e}"))
                })?;
        }
        ctx.register_catalog(CATALOG, catalog.clone());
        let feeds = Arc::new(Feeds::new(tables.clone(), at.clone()));
        ctx.register_udtf(FUNCTION, Arc::new(TableChangesFunction(feeds.clone())));
        Ok(Self {
            ctx,
            catalog,
            feeds,
            engine: engine.clone(),
            option: NamespaceOption::default(),
        })
    }

    /// Says how this session's caller picks the default namespace (for hints).
    pub fn with_namespace_option(mut self, option: NamespaceOption) -> Self {
        self.option = option;
        self
    }

    /// Makes the first of `namespaces` that exists on the ref the one unqualified names
    /// resolve in, else `default` (as Postgres' `search_path` skips schemas that do not
    /// exist); returns the one it picked.
    pub fn search_path(&self, namespaces: &[String]) -> String {
        let picked = namespaces
            .iter()
            .find(|n| self.catalog.has_namespace(n))
            .map_or("default", String::as_str)
            .to_string();
        self.ctx
            .state_ref()
            .write()
            .config_mut()
            .options_mut()
            .catalog
            .default_schema = picked.clone();
        picked
    }

    /// Makes `namespace.name` read `table` in this session, in front of a stored table of
    /// that name (pipelines hand a model's fresh output to the models that read it).
    pub fn shadow(
        &self,
        namespace: &str,
        name: &str,
        table: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<()> {
        if self.catalog.shadow(namespace, name, table) {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "namespace `{namespace}` does not exist"
            )))
        }
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs a script of `;`-separated statements; returns the last statement's rows.
    /// Views created by the script live only in this session.
    pub async fn run(&self, sql: &str) -> Result<QueryResult> {
        let started = Instant::now();
        let running = self.start(sql, self.engine.limits().query_timeout).await?;
        let batches = collect(running.batches).await?;
        Ok(QueryResult {
            schema: running.schema,
            batches,
            seconds: started.elapsed().as_secs_f64(),
            bytes_scanned: bytes_scanned(&running.plan),
        })
    }

    /// Starts a script of `;`-separated statements and streams the rows of its last query
    /// (or, if it has none, of its last statement). Every statement passes the statement
    /// policy ([`policy`]) and is planned; views are created in order; queries before the
    /// last are planned but not run, since nothing reads their rows. The time limit covers
    /// planning and the whole stream.
    /// The text's size is checked first; then on a planning thread ([`Engine::on_planner`])
    /// it is measured against the other statement bounds ([`guard`]), parsed and planned.
    pub async fn start(&self, sql: &str, timeout: Option<Duration>) -> Result<Running> {
        let deadline = timeout.map(|t| (tokio::time::Instant::now() + t, t));
        self.engine.check_size(sql)?;
        let (this, sql) = (self.clone(), sql.to_string());
        let planned = self.engine.on_planner(async move {
            let shape = this.engine.guard(&sql, Dialect::Basin)?;
            this.start_script(&sql, &shape, deadline).await
        });
        self.within(deadline, planned).await
    }

    async fn start_script(
        &self,
        sql: &str,
        shape: &Shape,
        deadline: Option<Deadline>,
    ) -> Result<Running> {
        let statements = self.engine.parse(sql, shape)?;
        if statements.is_empty() {
            return Err(Error::invalid("the query is empty")
                .with_hint("write a statement, e.g. `SELECT 1`"));
        }
        for statement in &statements {
            policy::check(statement)?;
        }
        // The last query's plan; else what the last other statement (a view, SHOW) gave.
        let mut last_query = None;
        let mut last_other = None;
        // Views and settings the script made, to make again in a distributed session.
        let mut prelude = Vec::new();
        for statement in statements {
            self.prepare(&statement).await?;
            let plan = plan_statement(&self.ctx.state(), statement.clone())
                .await
                .map_err(|e| sql_error(e, &self.catalog, self.option))?;
            policy::check_plan(&plan)?;
            self.engine.check_depth(&plan)?;
            if !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_)) {
                // What the script did before this query is what it reads.
                last_query = Some((plan, statement, prelude.len()));
                continue;
            }
            // Views and SHOW run now: later statements may read what they define.
            prelude.push(statement);
            let physical = self
                .ctx
                .execute_logical_plan(plan)
                .await
                .map_err(|e| sql_error(e, &self.catalog, self.option))?
                .create_physical_plan()
                .await
                .map_err(|e| sql_error(e, &self.catalog, self.option))?;
            let batches = datafusion::physical_plan::collect(physical.clone(), self.ctx.task_ctx())
                .await
                .map_err(|e| sql_error(e, &self.catalog, self.option))?;
            last_other = Some((physical, batches));
        }
        let mut running = match (last_query, last_other) {
            (Some((plan, statement, before)), _) => {
                prelude.truncate(before);
                self.execute_routed(plan, statement, prelude).await?
            }
            (None, Some((plan, batches))) => Running {
                schema: plan.schema(),
                batches: futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
                plan,
            },
            (None, None) => return Err(Error::internal("a script with no statement ran")),
        };
        if let Some(deadline) = deadline {
            running.batches = self.engine.until(running.batches, deadline);
        }
        Ok(running)
    }
}

impl Session {
    /// Streams the rows of one read-only query without collecting them (a function's input),
    /// parsed and planned as [`Session::start`]'s are.
    pub async fn stream(&self, sql: &str) -> Result<(SchemaRef, RecordBatchStream)> {
        self.engine.check_size(sql)?;
        let (this, sql) = (self.clone(), sql.to_string());
        let running = self
            .engine
            .on_planner(async move {
                let shape = this.engine.guard(&sql, Dialect::Basin)?;
                let mut statements = this.engine.parse(&sql, &shape)?;
                let (Some(statement), None) = (statements.pop_front(), statements.pop_front())
                else {
                    return Err(Error::invalid(format!(
                        "a function's input is one query, not `{sql}`"
                    )));
                };
                this.prepare(&statement).await?;
                let plan = this
                    .ctx
                    .state()
                    .statement_to_plan(statement)
                    .await
                    .map_err(|e| sql_error(e, &this.catalog, this.option))?;
                read_only()
                    .verify_plan(&plan)
                    .map_err(|e| sql_error(e, &this.catalog, this.option))?;
                this.engine.check_depth(&plan)?;
                this.execute_in(&this.ctx, plan).await
            })
            .await?;
        Ok((running.schema, running.batches))
    }

    /// Plans one parsed statement (a front door that parses SQL its own way, like the
    /// Postgres endpoint, with the statement bounds checked on its text), under the
    /// statement policy, on a planning thread.
    pub async fn plan(
        &self,
        statement: datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<LogicalPlan> {
        let this = self.clone();
        self.engine
            .on_planner(async move { this.plan_here(statement).await })
            .await
    }

    async fn plan_here(
        &self,
        statement: datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<LogicalPlan> {
        policy::check_sql(&statement)?;
        let statement = Statement::Statement(Box::new(statement));
        self.prepare(&statement).await?;
        let plan = plan_statement(&self.ctx.state(), statement)
            .await
            .map_err(|e| sql_error(e, &self.catalog, self.option))?;
        policy::check_plan(&plan)?;
        self.engine.check_depth(&plan)?;
        Ok(plan)
    }

    /// [`Session::plan`], stopped at `deadline` (when the statement's time limit runs out,
    /// and that limit) with the timeout error, counted as a query's.
    pub async fn plan_within(
        &self,
        statement: datafusion::sql::sqlparser::ast::Statement,
        deadline: Option<Deadline>,
    ) -> Result<LogicalPlan> {
        self.within(deadline, self.plan(statement)).await
    }

    /// Runs a planned query; its batches stream as they are computed, and end with an
    /// error at `deadline` (which counts from the statement's start, so planning spent some
    /// of it). Optimizing and building its streams run on a planning thread.
    pub async fn execute(&self, plan: LogicalPlan, deadline: Option<Deadline>) -> Result<Running> {
        let this = self.clone();
        let started = self
            .engine
            .on_planner(async move { this.execute_in(&this.ctx, plan).await });
        let mut running = self.within(deadline, started).await?;
        if let Some(deadline) = deadline {
            running.batches = self.engine.until(running.batches, deadline);
        }
        Ok(running)
    }

    /// Resolves the `table_changes` calls `statement` makes (see [`crate::changes`]). Boxed:
    /// the future of every query's path would otherwise nest its whole type.
    async fn prepare(&self, statement: &Statement) -> Result<()> {
        let calls = crate::changes::calls(statement);
        if calls.is_empty() {
            return Ok(());
        }
        let namespace = self
            .ctx
            .state()
            .config()
            .options()
            .catalog
            .default_schema
            .clone();
        let feeds = self.feeds.clone();
        let work: std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> =
            Box::pin(async move { feeds.prepare(calls, &namespace).await });
        work.await
    }

    async fn within<T>(
        &self,
        deadline: Option<Deadline>,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.engine.within(deadline, work).await
    }

    /// The time limit queries get unless a front door says otherwise.
    pub fn default_timeout(&self) -> Option<Duration> {
        self.engine.limits().query_timeout
    }

    /// Runs a script's last query where [`distributed::route`] says: `statement` is planned
    /// again in a distributed session when it goes to the cluster, after the script's
    /// earlier statements (`prelude`: views, settings). `EXPLAIN` says where.
    async fn execute_routed(
        &self,
        plan: LogicalPlan,
        statement: Statement,
        prelude: Vec<Statement>,
    ) -> Result<Running> {
        let (query, explain) = match &plan {
            LogicalPlan::Explain(e) => (e.plan.as_ref(), true),
            other => (other, false),
        };
        let route = distributed::route(&self.engine, query).await;
        let distributed = match &route {
            Route::Distributed(cluster, _) => {
                let ctx = distributed::context(&self.engine, &self.catalog, cluster, &self.ctx)?;
                for earlier in prelude {
                    let plan = plan_statement(&ctx.state(), earlier)
                        .await
                        .map_err(|e| sql_error(e, &self.catalog, self.option))?;
                    ctx.execute_logical_plan(plan)
                        .await
                        .map_err(|e| sql_error(e, &self.catalog, self.option))?
                        .collect()
                        .await
                        .map_err(|e| sql_error(e, &self.catalog, self.option))?;
                }
                let plan = plan_statement(&ctx.state(), statement)
                    .await
                    .map_err(|e| sql_error(e, &self.catalog, self.option))?;
                policy::check_plan(&plan)?;
                Some((ctx, plan))
            }
            Route::Local(_) => None,
        };
        if !explain {
            return match distributed {
                Some((ctx, plan)) => {
                    self.engine
                        .counters()
                        .distributed_queries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Route::Distributed(cluster, _) = route else {
                        unreachable!("a distributed session comes from a distributed route")
                    };
                    let mut running = self
                        .execute_in(&ctx, plan)
                        .await
                        .map_err(|e| cluster.explain_error(e))?;
                    running.batches = running
                        .batches
                        .map(move |batch| batch.map_err(|e| cluster.explain_error(e)))
                        .boxed();
                    Ok(running)
                }
                None => self.execute_in(&self.ctx, plan).await,
            };
        }
        let running = self.execute_in(&self.ctx, plan).await?;
        let batches = collect(running.batches).await?;
        let query = distributed.as_ref().map(|(ctx, plan)| match plan {
            LogicalPlan::Explain(e) => (ctx, e.plan.as_ref()),
            other => (ctx, other),
        });
        let rows = match (&route, self.engine.cluster()) {
            (Route::Local(None), None) => Vec::new(),
            _ => distributed::explain_rows(&route, query).await?,
        };
        let batches = distributed::append_rows(batches, rows)?;
        Ok(Running {
            schema: running.schema,
            batches: futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
            plan: running.plan,
        })
    }

    /// Optimizes `plan`, checks the depth of what will run, and starts it.
    async fn execute_in(&self, ctx: &SessionContext, plan: LogicalPlan) -> Result<Running> {
        let (state, plan) = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| sql_error(e, &self.catalog, self.option))?
            .into_parts();
        let optimized = state
            .optimize(&plan)
            .map_err(|e| sql_error(e, &self.catalog, self.option))?;
        self.engine.check_depth(&optimized)?;
        let physical = state
            .query_planner()
            .create_physical_plan(&optimized, &state)
            .await
            .map_err(|e| sql_error(e, &self.catalog, self.option))?;
        let stream = self
            .engine
            .execute(physical.clone(), ctx.task_ctx())?
            .map_err(|e| sql_error(e, &self.catalog, self.option))?;
        let schema = stream.schema();
        let catalog = self.catalog.clone();
        let engine = self.engine.clone();
        let option = self.option;
        Ok(Running {
            schema,
            batches: stream
                .map(move |batch| {
                    batch.map_err(|e| match sql_error(e, &catalog, option) {
                        e if e.kind() == ErrorKind::Limit => engine.out_of_memory(e),
                        e => e,
                    })
                })
                .boxed(),
            plan: physical,
        })
    }
}

/// Plans one statement. DataFusion's planner has panics a statement can reach (53.1:
/// `SELECT TABLE 1` unwraps a missing string); one becomes an internal error instead of
/// taking the session's caller down.
pub(crate) async fn plan_statement(
    state: &datafusion::execution::session_state::SessionState,
    statement: Statement,
) -> std::result::Result<LogicalPlan, DataFusionError> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(state.statement_to_plan(statement))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(DataFusionError::Internal(format!(
                "DataFusion's planner failed on this statement: {why}"
            )))
        })
}

fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}
