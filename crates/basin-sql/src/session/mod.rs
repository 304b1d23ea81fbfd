//! A [`Session`]: DataFusion over the tables of one ref, within an [`Engine`]'s limits. It
//! runs scripts and single queries: each statement is bounded ([`crate::guard`]), parsed
//! within its budget, checked by the statement policy ([`crate::policy`]), planned on a
//! planning thread and run here or on the cluster ([`crate::distributed`]), within its time
//! limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use basin_catalog::Resolved;
use basin_core::{Error, Result, suggest};
use basin_table::Tables;
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use futures::StreamExt;

use crate::changes::{FUNCTION, Feeds, TableChangesFunction};
use crate::deadline::{Deadline, ms};
use crate::engine::Engine;
use crate::errors::{NamespaceOption, sql_error};
use crate::guard::{Dialect, Shape};
use crate::planners::plan_statement;
use crate::provider::{CATALOG, RefCatalog};
use crate::result_cache::AnswerKey;
use crate::results::{QueryResult, Running, bytes_scanned, collect};
use crate::{
    conjunctions, join_pruning, not_in, policy, reserve, rules, view_buffers, window_memory,
};

mod answers;
mod execute;

/// DataFusion over the tables of one ref, within an engine's limits.
#[derive(Clone)]
pub struct Session {
    ctx: SessionContext,
    catalog: Arc<RefCatalog>,
    /// The `table_changes` calls of this session's statements, resolved before planning.
    feeds: Arc<Feeds>,
    engine: Engine,
    option: NamespaceOption,
    /// The commit the session reads, and whether its tables read strings as views: what an
    /// answer depends on besides its text ([`AnswerKey`]).
    commit: String,
    string_views: bool,
    /// Whether scripts look for their answer in the result cache, and keep it there.
    cached: bool,
    /// Whether scans read and keep decoded columns (`[sql] column_cache`).
    kept_columns: bool,
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
        .with_physical_optimizer_rule(Arc::new(window_memory::ReserveWindowRows))
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
            commit: at.commit.to_string(),
            string_views,
            cached: false,
            kept_columns: false,
        })
    }

    /// Says how this session's caller picks the default namespace (for hints).
    pub fn with_namespace_option(mut self, option: NamespaceOption) -> Self {
        self.option = option;
        self
    }

    /// Makes [`Session::start`] answer from the result cache when it holds the answer, and
    /// keep answers there (`[sql] result_cache`, see [`crate::result_cache`]): for doors
    /// whose readers ask the same again (the console, dashboards). Off unless asked for.
    pub fn with_result_cache(mut self, on: bool) -> Self {
        self.cached = on;
        self
    }

    /// Makes this session's scans read columns the process keeps decoded, and keep those it
    /// decodes (`[sql] column_cache`, see [`crate::column_cache`]): for the doors of a
    /// process that lives on (a server), and a command's query where they are kept on disk
    /// for the next process too ([`crate::Engine::keeps_columns_on_disk`]). Off unless
    /// asked for.
    pub fn with_kept_columns(mut self, on: bool) -> Self {
        self.kept_columns = on;
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
        let key = self.answer_key(sql);
        if let Some(key) = &key
            && let Some((schema, batches)) = self.engine.answers().get(key).await
        {
            let plan = Arc::new(datafusion::physical_plan::empty::EmptyExec::new(
                schema.clone(),
            ));
            return Ok(Running {
                schema,
                batches,
                plan,
                cached: true,
            });
        }
        let (this, sql) = (self.clone(), sql.to_string());
        let planned = self.engine.on_planner(async move {
            let started = Instant::now();
            let shape = this.engine.guard(&sql, Dialect::Basin)?;
            tracing::debug!(ms = ms(started), "statement bounds checked");
            this.start_script(&sql, &shape, deadline, key).await
        });
        self.within(deadline, planned).await
    }

    async fn start_script(
        &self,
        sql: &str,
        shape: &Shape,
        deadline: Option<Deadline>,
        key: Option<AnswerKey>,
    ) -> Result<Running> {
        let statements = self.engine.parse(sql, shape)?;
        if statements.is_empty() {
            return Err(Error::invalid("the query is empty")
                .with_hint("write a statement, e.g. `SELECT 1`"));
        }
        for statement in &statements {
            policy::check(statement)?;
        }
        // A change feed's rows are not a commit's alone.
        let key = key.filter(|_| {
            statements
                .iter()
                .all(|s| crate::changes::calls(s).is_empty())
        });
        // The last query's plan; else what the last other statement (a view, SHOW) gave.
        let mut last_query = None;
        let mut last_other = None;
        // Views and settings the script made, to make again in a distributed session.
        let mut prelude = Vec::new();
        for statement in statements {
            let started = Instant::now();
            self.engine.check_copies(&statement)?;
            self.prepare(&statement).await?;
            let plan = plan_statement(&self.ctx.state(), statement.clone())
                .await
                .map_err(|e| sql_error(e, &self.catalog, self.option))?;
            tracing::debug!(ms = ms(started), "statement planned");
            policy::check_plan(&plan)?;
            self.engine.check_plan_size(&plan)?;
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
                let key = key.filter(|_| answers::same_every_time(&plan));
                let mut running = self.execute_routed(plan, statement, prelude).await?;
                if let Some(key) = key {
                    running.batches =
                        self.engine
                            .answers()
                            .fill(key, running.schema.clone(), running.batches);
                }
                running
            }
            (None, Some((plan, batches))) => Running {
                schema: plan.schema(),
                batches: futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
                plan,
                cached: false,
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
    /// What `sql`'s answer here depends on, when this session uses the result cache.
    fn answer_key(&self, sql: &str) -> Option<AnswerKey> {
        if !self.cached {
            return None;
        }
        let namespace = self
            .ctx
            .state_ref()
            .read()
            .config()
            .options()
            .catalog
            .default_schema
            .clone();
        let reader = basin_catalog::actor::current().and_then(|actor| {
            let grants = actor.grants?;
            Some(format!(
                "{}: {grants:?}",
                actor.principal.unwrap_or_default()
            ))
        });
        Some(AnswerKey {
            commit: self.commit.clone(),
            namespace,
            string_views: self.string_views,
            reader,
            sql: sql.to_string(),
        })
    }
}
