//! Join filters that prune the probe side's row groups whatever shape DataFusion gives them.
//!
//! Once a hash join has built its side, DataFusion 53 pushes what it saw into the scan of the
//! other side as a dynamic filter, and the Parquet reader prunes files and row groups whose
//! statistics cannot match it. Two of the filter's shapes defeat that pruning:
//!
//! - **A partitioned join** routes each row to its partition's keys: `CASE
//!   hash_repartition(k) % 2 WHEN 0 THEN k >= 3 AND k <= 59999845 AND k IN (..) WHEN 1 THEN ..
//!   ELSE false END`. The pruner cannot read a `CASE` and keeps every row group.
//! - **An `IN` list of more than 20 keys** (the build side had up to DataFusion's
//!   `hash_join_inlist_pushdown_max_distinct_values`): the pruner rewrites at most 20 values
//!   into range tests, and keeps every row group for a longer list. The bounds beside it (the
//!   smallest and largest key) span the whole table when the keys are spread out.
//!
//! TPC-H q18 at scale 10 meets both: 99 orders survive its `HAVING`, the planner cannot know
//! that and joins them with lineitem in `Partitioned` mode, and all 468 of lineitem's row groups
//! were read although lineitem is sorted by `l_orderkey` and the 99 keys lie in fewer than 99
//! of them (apache/datafusion#21931 proposes a merged `IN` list upstream).
//!
//! The rule below wraps each dynamic filter of a Parquet scan in [`PruningForm`]. Rows are
//! still filtered by the join's own filter, unchanged; only the snapshot the pruner takes of it
//! is rewritten: a `CASE` becomes the disjunction of its branches, and an `IN` list becomes a
//! disjunction of equalities, which the pruner reads at any length. Each rewrite is implied by
//! the filter it replaces (a row the filter keeps makes one of the branches true, and an `IN`
//! list is true exactly when one of its equalities is), so a row group the rewrite excludes
//! holds no row the filter keeps: pruning stays exact, only finer.

use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::physical_plan::{FileScanConfig, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, DynamicFilterPhysicalExpr, InListExpr, Literal,
};
use datafusion::physical_expr::{conjunction, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};

/// The physical optimizer rule: every Parquet scan's dynamic filters wrapped in
/// [`PruningForm`]. Runs after DataFusion's rules, which push the filters into the scans.
#[derive(Debug)]
pub(crate) struct PruneByJoinKeys;

impl PhysicalOptimizerRule for PruneByJoinKeys {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(scan) = node.as_any().downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(config) = scan.data_source().as_any().downcast_ref::<FileScanConfig>() else {
                return Ok(Transformed::no(node));
            };
            let Some(parquet) = config.file_source.as_any().downcast_ref::<ParquetSource>() else {
                return Ok(Transformed::no(node));
            };
            let Some(predicate) = wrapped(parquet.filter()) else {
                return Ok(Transformed::no(node));
            };
            let mut config = config.clone();
            config.file_source = Arc::new(parquet.with_predicate(predicate));
            let scan = scan.clone().with_data_source(Arc::new(config));
            Ok(Transformed::yes(Arc::new(scan) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "prune_by_join_keys"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `predicate` with its dynamic conjuncts wrapped; `None` when it has none (or they are
/// wrapped already).
fn wrapped(predicate: Option<Arc<dyn PhysicalExpr>>) -> Option<Arc<dyn PhysicalExpr>> {
    let predicate = predicate?;
    let mut changed = false;
    let conjuncts = split_conjunction(&predicate)
        .into_iter()
        .map(|c| {
            if c.as_any().is::<DynamicFilterPhysicalExpr>() {
                changed = true;
                Arc::new(PruningForm(Arc::clone(c))) as Arc<dyn PhysicalExpr>
            } else {
                Arc::clone(c)
            }
        })
        .collect::<Vec<_>>();
    changed.then(|| conjunction(conjuncts))
}

/// A join's dynamic filter whose snapshot, the form the Parquet pruner reads, is rewritten
/// by [`for_pruning`]; evaluated on rows, it is the filter itself.
#[derive(Debug, Eq)]
pub(crate) struct PruningForm(Arc<dyn PhysicalExpr>);

// By hand, as DataFusion's own expressions do (rust-lang/rust#78808: the derives cannot
// compare a field of `Arc<dyn PhysicalExpr>`).
impl PartialEq for PruningForm {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq(&other.0)
    }
}

impl Hash for PruningForm {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for PruningForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PruningForm({})", self.0)
    }
}

impl PhysicalExpr for PruningForm {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.0.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.0.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        self.0.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.0]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(PruningForm(children.swap_remove(0))))
    }

    /// The pruner snapshots bottom-up: the dynamic filter below is already its current
    /// expression by the time this is asked.
    fn snapshot(&self) -> Result<Option<Arc<dyn PhysicalExpr>>> {
        let current = self.0.snapshot()?.unwrap_or_else(|| Arc::clone(&self.0));
        Ok(Some(for_pruning(&current)))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_sql(f)
    }
}

/// A predicate implied by `expr` (true wherever `expr` is) that the Parquet pruner can read:
/// `AND` and `OR` kept, a `CASE` as the disjunction of its branches, an `IN` list as a
/// disjunction of equalities. Anything else stays as it is.
pub(crate) fn for_pruning(expr: &Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
    let any = expr.as_any();
    if let Some(binary) = any.downcast_ref::<BinaryExpr>()
        && matches!(binary.op(), Operator::And | Operator::Or)
    {
        let (left, right) = (for_pruning(binary.left()), for_pruning(binary.right()));
        return Arc::new(BinaryExpr::new(left, *binary.op(), right));
    }
    if let Some(case) = any.downcast_ref::<CaseExpr>() {
        // A row the `CASE` keeps took one of its branches, and that branch was true. A
        // branch that is a false or null literal keeps nothing.
        let branches = case
            .when_then_expr()
            .iter()
            .map(|(_, then)| then)
            .chain(case.else_expr())
            .filter(|branch| !never_true(branch))
            .map(for_pruning)
            .collect();
        return disjunction(branches);
    }
    if let Some(list) = any.downcast_ref::<InListExpr>()
        && !list.negated()
    {
        let equalities = list
            .list()
            .iter()
            .filter(|value| !never_true(value))
            .map(|value| {
                Arc::new(BinaryExpr::new(
                    Arc::clone(list.expr()),
                    Operator::Eq,
                    Arc::clone(value),
                )) as Arc<dyn PhysicalExpr>
            })
            .collect();
        return disjunction(equalities);
    }
    Arc::clone(expr)
}

/// A `false` or null literal.
fn never_true(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.as_any()
        .downcast_ref::<Literal>()
        .is_some_and(|l| l.value().is_null() || l.value() == &ScalarValue::Boolean(Some(false)))
}

/// `a OR b OR ..` as a balanced tree (the pruner recurses once per level); `false` when empty.
fn disjunction(mut terms: Vec<Arc<dyn PhysicalExpr>>) -> Arc<dyn PhysicalExpr> {
    match terms.len() {
        0 => Arc::new(Literal::new(ScalarValue::Boolean(Some(false)))),
        1 => terms.swap_remove(0),
        n => {
            let right = terms.split_off(n / 2);
            Arc::new(BinaryExpr::new(
                disjunction(terms),
                Operator::Or,
                disjunction(right),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::datasource::MemTable;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::metrics::MetricValue;
    use datafusion::physical_plan::{ExecutionPlan, collect};
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::PruneByJoinKeys;

    /// 28 keys: 25 in one row group of the probe table, and three far apart (so the
    /// smallest and largest span the whole table), more than the 20 the pruner reads as a list.
    fn keys() -> Vec<i64> {
        let mut keys: Vec<i64> = (3000..3025).collect();
        keys.extend([12, 15_000, 19_990]);
        keys
    }

    /// `probe` (k = 0..20,000, sorted, in 20 row groups of 1,000; v = 2k) and `build` (the
    /// keys above), with the rule or without it, the join built once or partitioned.
    async fn context(dir: &std::path::Path, rule: bool, partitioned: bool) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let path = dir.join("probe.parquet");
        if !path.exists() {
            let k: Vec<i64> = (0..20_000).collect();
            let v: Vec<i64> = k.iter().map(|k| k * 2).collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(k)), Arc::new(Int64Array::from(v))],
            )
            .unwrap();
            let props = WriterProperties::builder()
                .set_max_row_group_row_count(Some(1_000))
                .build();
            let file = std::fs::File::create(&path).unwrap();
            let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
        }
        let mut config = SessionConfig::new().with_target_partitions(2);
        if partitioned {
            let options = config.options_mut();
            options.optimizer.hash_join_single_partition_threshold = 0;
            options.optimizer.hash_join_single_partition_threshold_rows = 0;
        }
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if rule {
            state = state.with_physical_optimizer_rule(Arc::new(PruneByJoinKeys));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_parquet(
            "probe",
            path.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
        let build_schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let build = RecordBatch::try_new(
            build_schema.clone(),
            vec![Arc::new(Int64Array::from(keys()))],
        )
        .unwrap();
        let table = MemTable::try_new(build_schema, vec![vec![build]]).unwrap();
        ctx.register_table("build", Arc::new(table)).unwrap();
        ctx
    }

    /// The join's answer, its plan as it ran, and the row groups of `probe` its scan read.
    async fn run(ctx: &SessionContext) -> (Vec<(i64, i64)>, String, usize) {
        let sql = "SELECT p.k, p.v FROM build b JOIN probe p ON p.k = b.k ORDER BY p.k";
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let batches = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        let mut rows = Vec::new();
        for batch in &batches {
            let k = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let v = batch
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            rows.extend(
                k.iter()
                    .zip(v.iter())
                    .map(|(k, v)| (k.unwrap(), v.unwrap())),
            );
        }
        let mut matched = 0;
        plan.apply(|node: &Arc<dyn ExecutionPlan>| {
            for metric in node.metrics().iter().flat_map(|m| m.iter()) {
                if let MetricValue::PruningMetrics {
                    name,
                    pruning_metrics,
                } = metric.value()
                    && name.as_ref() == "row_groups_pruned_statistics"
                {
                    matched += pruning_metrics.matched();
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        (rows, shown, matched)
    }

    /// Both join modes: the same rows with the rule as without, and the probe side reads only
    /// the 4 row groups that hold keys (0, 3, 15 and 19) instead of all 20.
    #[tokio::test]
    async fn a_join_prunes_the_row_groups_its_keys_miss() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected: Vec<(i64, i64)> = keys().into_iter().map(|k| (k, 2 * k)).collect();
        expected.sort();
        for partitioned in [false, true] {
            let (before, plan_before, read_before) =
                run(&context(dir.path(), false, partitioned).await).await;
            let (after, plan_after, read_after) =
                run(&context(dir.path(), true, partitioned).await).await;
            assert_eq!(before, expected, "{plan_before}");
            assert_eq!(after, expected, "{plan_after}");
            let mode = if partitioned {
                "Partitioned"
            } else {
                "CollectLeft"
            };
            assert!(plan_after.contains(&format!("mode={mode}")), "{plan_after}");
            assert!(
                plan_after.contains("PruningForm(DynamicFilter"),
                "{plan_after}"
            );
            assert_eq!(read_after, 4, "{mode}: {plan_after}");
            assert!(
                read_before > read_after,
                "{mode}: {read_before} {plan_before}"
            );
        }
    }
}
