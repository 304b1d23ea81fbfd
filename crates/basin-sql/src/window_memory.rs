//! A window's rows counted in the query's memory pool.
//!
//! DataFusion 53's `WindowAggExec` (a window whose frame reaches the end of its partition:
//! any aggregate `OVER ()` or `OVER (PARTITION BY ..)` without an `ORDER BY`) holds every
//! batch of its input until it has seen the last one, and reserves none of it in the memory
//! pool. So `SELECT avg(value) OVER () FROM range(100000000)` held 800 MB past any
//! `[sql] query_memory_limit`, and so could the windows Basin's own rule makes of TPC-H
//! q17's and q02's subqueries (`rules/group_window.rs`) over a large join. The rule below puts
//! a [`ReserveRowsExec`] under every `WindowAggExec`: it passes its input's batches on and
//! grows a reservation by each one's size, held as long as the window holds its input stream
//! (until the window is done). Past the query's share the query fails with the pool's error,
//! as a sort or a join that cannot spill does.
//!
//! `BoundedWindowAggExec` (frames that end before the partition does, such as running totals)
//! holds only the rows its frames still need, and is left as it is. Written here because
//! DataFusion 53 has no such accounting.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::windows::WindowAggExec;

use crate::pass_through::{Pass, PassExec};

/// Passes its input's batches on, each reserved in the query's memory pool until the stream
/// is dropped.
pub(crate) type ReserveRowsExec = PassExec<ReserveRows>;

#[derive(Debug, Clone)]
pub(crate) struct ReserveRows;

impl Pass for ReserveRows {
    const NAME: &'static str = "ReserveRowsExec";

    fn batches(
        &self,
        partition: usize,
        context: &TaskContext,
    ) -> Box<dyn FnMut(RecordBatch) -> Result<RecordBatch> + Send> {
        let reservation = MemoryConsumer::new(format!("WindowAggExec[{partition}]'s input"))
            .register(context.memory_pool());
        Box::new(move |batch| {
            reservation.try_grow(batch.get_array_memory_size())?;
            Ok(batch)
        })
    }
}

/// Puts a [`ReserveRowsExec`] under every `WindowAggExec`.
#[derive(Debug)]
pub(crate) struct ReserveWindowRows;

impl PhysicalOptimizerRule for ReserveWindowRows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.as_any().downcast_ref::<WindowAggExec>().is_none() {
                return Ok(Transformed::no(node));
            }
            let input = node.children()[0].clone();
            if input.as_any().is::<ReserveRowsExec>() {
                return Ok(Transformed::no(node));
            }
            let reserved: Arc<dyn ExecutionPlan> =
                Arc::new(ReserveRowsExec::new(input, ReserveRows));
            Ok(Transformed::yes(node.with_new_children(vec![reserved])?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "basin_reserve_window_rows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::error::DataFusionError;
    use datafusion::execution::memory_pool::GreedyMemoryPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::ReserveWindowRows;

    /// A session whose pool holds 24 MiB (a sort reserves 10 MB to merge); with the rule if
    /// `rule`.
    fn context(rule: bool) -> SessionContext {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(24 << 20)))
            .build_arc()
            .unwrap();
        let mut state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_runtime_env(runtime)
            .with_default_features();
        if rule {
            state = state.with_physical_optimizer_rule(Arc::new(ReserveWindowRows));
        }
        SessionContext::new_with_state(state.build())
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<String, DataFusionError> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
    }

    /// 8 M rows of 8 bytes (64 MB) under a window over all of them.
    const BIG: &str = "SELECT count(w) AS n FROM \
        (SELECT avg(value) OVER () AS w FROM range(8000000))";

    #[tokio::test]
    async fn a_window_past_the_pool_fails_as_out_of_memory() {
        // Without the rule, the window holds 64 MB in a pool of 24 MiB and answers.
        let answer = run(&context(false), BIG).await.unwrap();
        assert!(answer.contains("8000000"), "{answer}");
        let error = run(&context(true), BIG).await.unwrap_err();
        assert!(
            matches!(error.find_root(), DataFusionError::ResourcesExhausted(_)),
            "{error}"
        );
        assert!(error.to_string().contains("WindowAggExec"), "{error}");
    }

    #[tokio::test]
    async fn a_window_within_the_pool_answers_and_lets_its_memory_go() {
        let ctx = context(true);
        let sql = "SELECT value, sum(value) OVER (PARTITION BY value % 3) AS s \
            FROM range(10) ORDER BY value";
        let plan = run(&ctx, &format!("EXPLAIN {sql}")).await.unwrap();
        assert!(plan.contains("ReserveRowsExec"), "{plan}");
        let answer = run(&ctx, sql).await.unwrap();
        assert!(answer.contains("| 9     | 18 |"), "{answer}");
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    }
}
