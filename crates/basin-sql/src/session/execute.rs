//! A session's single statements (a function's input, the Postgres endpoint's plans) and
//! the last query of a script, run here or on the cluster.

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use basin_core::{Error, ErrorKind, Result};
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement;
use futures::StreamExt;

use super::Session;
use crate::deadline::Deadline;
use crate::distributed::{self, Route};
use crate::errors::sql_error;
use crate::guard::Dialect;
use crate::planners::plan_statement;
use crate::policy;
use crate::results::{RecordBatchStream, Running, collect};

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
                this.engine.check_copies(&statement)?;
                this.prepare(&statement).await?;
                let plan = plan_statement(&this.ctx.state(), statement)
                    .await
                    .map_err(|e| sql_error(e, &this.catalog, this.option))?;
                read_only()
                    .verify_plan(&plan)
                    .map_err(|e| sql_error(e, &this.catalog, this.option))?;
                this.engine.check_plan_size(&plan)?;
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
        self.engine.check_copies(&statement)?;
        self.prepare(&statement).await?;
        let plan = plan_statement(&self.ctx.state(), statement)
            .await
            .map_err(|e| sql_error(e, &self.catalog, self.option))?;
        policy::check_plan(&plan)?;
        self.engine.check_plan_size(&plan)?;
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
    pub(super) async fn prepare(&self, statement: &Statement) -> Result<()> {
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

    pub(super) async fn within<T>(
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
    pub(super) async fn execute_routed(
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
            cached: false,
        })
    }

    /// Optimizes `plan`, checks the depth of what will run, and starts it.
    async fn execute_in(&self, ctx: &SessionContext, plan: LogicalPlan) -> Result<Running> {
        let (state, plan) = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| sql_error(e, &self.catalog, self.option))?
            .into_parts();
        let started = std::time::Instant::now();
        let optimized = state
            .optimize(&plan)
            .map_err(|e| sql_error(e, &self.catalog, self.option))?;
        tracing::debug!(ms = crate::deadline::ms(started), "plan optimized");
        self.engine.check_plan_size(&optimized)?;
        let started = std::time::Instant::now();
        let physical = state
            .query_planner()
            .create_physical_plan(&optimized, &state)
            .await
            .map_err(|e| sql_error(e, &self.catalog, self.option))?;
        tracing::debug!(ms = crate::deadline::ms(started), "physical plan made");
        let physical = if self.kept_columns {
            crate::column_cache::scan::keep(physical, self.engine.columns())
        } else {
            physical
        };
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
            cached: false,
        })
    }
}

fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}
