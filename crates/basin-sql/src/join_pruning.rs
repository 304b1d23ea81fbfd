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
//! is rewritten ([`for_pruning`]): a `CASE` becomes the union of its branches' keys (one range
//! of the smallest and largest, and one `IN` list of all), and an `IN` list becomes at most 20
//! ranges of its sorted keys, split at the widest gaps, which the pruner reads. Each rewrite is
//! implied by the filter it replaces (a row the `CASE` keeps met one branch, whose keys are in
//! the union; a key in a list lies in one of its ranges), so a row group the rewrite excludes
//! holds no row the filter keeps: pruning stays exact, only finer.

use std::any::Any;
use std::cmp::Ordering;
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

/// The most terms a rewritten filter has: the pruner evaluates its predicate once per row
/// group and page, and DataFusion 53 works out each `AND`'s and `OR`'s type anew from its
/// whole subtree on every evaluation, so a filter of 200 equalities cost TPC-H q17 two seconds
/// at scale 1. DataFusion's own pruner rewrites `IN` lists of up to 20 values.
const MAX_TERMS: usize = 20;

/// A predicate implied by `expr` (true wherever `expr` is) that the Parquet pruner can read,
/// of at most [`MAX_TERMS`] ranges per key; `expr` itself when it says nothing the pruner could
/// use. A `CASE` (one branch per partition) gives the union of its branches' keys: the
/// smallest and largest key of any, and all their `IN` lists in one. An `IN` list becomes
/// ranges of its sorted values, split at the widest gaps. Conjuncts neither bounds nor lists
/// (a hash table lookup) are left out, which only makes the predicate weaker.
pub(crate) fn for_pruning(expr: &Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
    let keys = match expr.as_any().downcast_ref::<CaseExpr>() {
        // A row the `CASE` keeps took one of its branches, and that branch was true. A
        // branch that is a false or null literal keeps nothing.
        Some(case) => {
            let branches: Vec<Keys> = case
                .when_then_expr()
                .iter()
                .map(|(_, then)| then)
                .chain(case.else_expr())
                .filter(|branch| !never_true(branch))
                .map(Keys::of)
                .collect();
            if branches.is_empty() {
                return Arc::new(Literal::new(ScalarValue::Boolean(Some(false))));
            }
            Keys::union(branches)
        }
        None => Keys::of(expr),
    };
    keys.predicate().unwrap_or_else(|| Arc::clone(expr))
}

/// What a join filter, or one partition's branch of it, says about the probe side's keys.
#[derive(Default)]
struct Keys {
    /// `key >= min AND key <= max`, per key expression (one per join column).
    bounds: Vec<(Arc<dyn PhysicalExpr>, ScalarValue, ScalarValue)>,
    /// `key IN (values)`: a single-column join's keys, when the build side was small.
    list: Option<(Arc<dyn PhysicalExpr>, Vec<ScalarValue>)>,
}

impl Keys {
    /// The bounds and the `IN` list among `filter`'s conjuncts (DataFusion writes a join
    /// filter as `k >= min AND k <= max AND k IN (..)`).
    fn of(filter: &Arc<dyn PhysicalExpr>) -> Self {
        let mut mins = Vec::new();
        let mut maxes = Vec::new();
        let mut list = None;
        for conjunct in split_conjunction(filter) {
            let any = conjunct.as_any();
            if let Some(binary) = any.downcast_ref::<BinaryExpr>()
                && let Some(value) = literal(binary.right())
            {
                let bound = (Arc::clone(binary.left()), value);
                match binary.op() {
                    Operator::GtEq => mins.push(bound),
                    Operator::LtEq => maxes.push(bound),
                    _ => {}
                }
            } else if let Some(in_list) = any.downcast_ref::<InListExpr>()
                && !in_list.negated()
                && list.is_none()
            {
                let values: Option<Vec<ScalarValue>> = in_list.list().iter().map(literal).collect();
                list = values.map(|values| (Arc::clone(in_list.expr()), values));
            }
        }
        let bounds = mins
            .into_iter()
            .filter_map(|(key, min)| {
                let (_, max) = maxes.iter().find(|(k, _)| k == &key)?;
                Some((key, min, max.clone()))
            })
            .collect();
        Keys { bounds, list }
    }

    /// What every one of `branches` allows: the bounds of the keys all of them bound, and
    /// one `IN` list when each has one of the same key.
    fn union(branches: Vec<Keys>) -> Self {
        let mut branches = branches.into_iter();
        let mut union = branches.next().unwrap_or_default();
        for branch in branches {
            union.bounds.retain_mut(|(key, min, max)| {
                let Some((_, other_min, other_max)) = branch.bounds.iter().find(|(k, ..)| k == key)
                else {
                    return false;
                };
                if other_min.partial_cmp(min) == Some(Ordering::Less) {
                    *min = other_min.clone();
                }
                if other_max.partial_cmp(max) == Some(Ordering::Greater) {
                    *max = other_max.clone();
                }
                true
            });
            union.list = match (union.list, branch.list) {
                (Some((key, mut values)), Some((other_key, other_values)))
                    if *key == *other_key =>
                {
                    values.extend(other_values);
                    Some((key, values))
                }
                _ => None,
            };
        }
        union
    }

    /// The bounds, and the list as at most [`MAX_TERMS`] ranges; `None` when there are
    /// neither.
    fn predicate(self) -> Option<Arc<dyn PhysicalExpr>> {
        let mut terms: Vec<Arc<dyn PhysicalExpr>> = self
            .bounds
            .into_iter()
            .map(|(key, min, max)| range(&key, min, max))
            .collect();
        if let Some((key, values)) = self.list {
            terms.push(disjunction(
                ranges(values)
                    .into_iter()
                    .map(|(low, high)| range(&key, low, high))
                    .collect(),
            ));
        }
        (!terms.is_empty()).then(|| conjunction(terms))
    }
}

/// `values` (sorted, without nulls or repeats) as at most [`MAX_TERMS`] ranges that cover them
/// all: split at the widest gaps where the values have distances (numbers, dates), else into
/// runs of about equal counts.
fn ranges(mut values: Vec<ScalarValue>) -> Vec<(ScalarValue, ScalarValue)> {
    values.retain(|v| !v.is_null());
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    values.dedup();
    let n = values.len();
    if n <= MAX_TERMS {
        return values.into_iter().map(|v| (v.clone(), v)).collect();
    }
    // Split after these positions.
    let gaps: Option<Vec<usize>> = values.windows(2).map(|w| w[0].distance(&w[1])).collect();
    let mut splits: Vec<usize> = match gaps {
        Some(gaps) => {
            let mut widest: Vec<usize> = (0..gaps.len()).collect();
            widest.sort_by_key(|&i| std::cmp::Reverse(gaps[i]));
            widest.truncate(MAX_TERMS - 1);
            widest
        }
        None => (1..MAX_TERMS).map(|k| k * n / MAX_TERMS - 1).collect(),
    };
    splits.sort_unstable();
    let mut ranges = Vec::with_capacity(MAX_TERMS);
    let mut start = 0;
    for end in splits.into_iter().chain([n - 1]) {
        ranges.push((values[start].clone(), values[end].clone()));
        start = end + 1;
    }
    ranges
}

/// `key = low` or `key >= low AND key <= high`.
fn range(
    key: &Arc<dyn PhysicalExpr>,
    low: ScalarValue,
    high: ScalarValue,
) -> Arc<dyn PhysicalExpr> {
    let compare = |op, value| {
        Arc::new(BinaryExpr::new(
            Arc::clone(key),
            op,
            Arc::new(Literal::new(value)),
        )) as Arc<dyn PhysicalExpr>
    };
    if low == high {
        return compare(Operator::Eq, low);
    }
    Arc::new(BinaryExpr::new(
        compare(Operator::GtEq, low),
        Operator::And,
        compare(Operator::LtEq, high),
    ))
}

/// The value of a literal expression.
fn literal(expr: &Arc<dyn PhysicalExpr>) -> Option<ScalarValue> {
    expr.as_any()
        .downcast_ref::<Literal>()
        .map(|l| l.value().clone())
}

/// A `false` or null literal.
fn never_true(expr: &Arc<dyn PhysicalExpr>) -> bool {
    literal(expr).is_some_and(|v| v.is_null() || v == ScalarValue::Boolean(Some(false)))
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

#[cfg(test)]
mod rewrite_tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{
        BinaryExpr, CaseExpr, Column, InListExpr, Literal, lit,
    };
    use datafusion::physical_plan::PhysicalExpr;

    use super::{MAX_TERMS, for_pruning};

    fn key() -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new("k", 0))
    }

    /// `k >= min AND k <= max AND k IN (keys)`, as DataFusion writes a join filter.
    fn join_filter(keys: &[i64]) -> Arc<dyn PhysicalExpr> {
        let bound = |op, v: i64| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(key(), op, lit(ScalarValue::Int64(Some(v)))))
        };
        let list = Arc::new(
            InListExpr::try_new_from_array(key(), Arc::new(Int64Array::from(keys.to_vec())), false)
                .unwrap(),
        );
        let bounds = Arc::new(BinaryExpr::new(
            bound(Operator::GtEq, *keys.iter().min().unwrap()),
            Operator::And,
            bound(Operator::LtEq, *keys.iter().max().unwrap()),
        ));
        Arc::new(BinaryExpr::new(bounds, Operator::And, list))
    }

    /// `expr` on each of `values` as `k`.
    fn holds(expr: &Arc<dyn PhysicalExpr>, values: &[i64]) -> Vec<bool> {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
            .unwrap();
        let answer = expr
            .evaluate(&batch)
            .unwrap()
            .into_array(values.len())
            .unwrap();
        let answer = answer.as_any().downcast_ref::<BooleanArray>().unwrap();
        answer.iter().map(|v| v == Some(true)).collect()
    }

    /// The comparisons in `expr`: what the pruner evaluates per row group and page.
    fn comparisons(expr: &Arc<dyn PhysicalExpr>) -> usize {
        let own = expr
            .as_any()
            .downcast_ref::<BinaryExpr>()
            .is_some_and(|b| matches!(b.op(), Operator::Eq | Operator::GtEq | Operator::LtEq));
        usize::from(own) + expr.children().into_iter().map(comparisons).sum::<usize>()
    }

    #[test]
    fn a_long_list_becomes_few_ranges_that_still_hold_every_key() {
        // 1,000 keys in 25 clusters: the widest gaps fall between clusters.
        let keys: Vec<i64> = (0..1000)
            .map(|i| (i / 40) * 1_000_000 + (i % 40) * 3)
            .collect();
        let rewritten = for_pruning(&join_filter(&keys));
        assert!(!rewritten.to_string().contains("IN"), "{rewritten}");
        // The bounds (2) and at most MAX_TERMS ranges of two comparisons each.
        assert!(comparisons(&rewritten) <= 2 + 2 * MAX_TERMS, "{rewritten}");
        assert!(holds(&rewritten, &keys).iter().all(|&h| h), "{rewritten}");
        // Between the clusters that stayed apart, and past the ends: nothing.
        assert_eq!(
            holds(&rewritten, &[-1, 500_000, 24_500_000, 30_000_000]),
            [false; 4]
        );
    }

    #[test]
    fn a_partitioned_filter_becomes_the_union_of_its_partitions() {
        let left: Vec<i64> = (0..30).map(|i| i * 1000).collect();
        let right: Vec<i64> = (0..30).map(|i| 500_000 + i * 7).collect();
        let case: Arc<dyn PhysicalExpr> = Arc::new(
            CaseExpr::try_new(
                Some(key()),
                vec![
                    (lit(0i64), join_filter(&left)),
                    (lit(1i64), join_filter(&right)),
                ],
                Some(lit(false)),
            )
            .unwrap(),
        );
        let rewritten = for_pruning(&case);
        assert!(!rewritten.to_string().contains("CASE"), "{rewritten}");
        assert!(comparisons(&rewritten) <= 2 + 2 * MAX_TERMS, "{rewritten}");
        let all: Vec<i64> = left.iter().chain(&right).copied().collect();
        assert!(holds(&rewritten, &all).iter().all(|&h| h), "{rewritten}");
        assert_eq!(holds(&rewritten, &[-5, 700_000, 600_000]), [false; 3]);
    }

    #[test]
    fn a_partition_without_a_list_keeps_only_the_bounds_of_all() {
        // One partition's build side was large: a hash table lookup, which the pruner cannot
        // read (here a column of booleans stands for it).
        let lookup: Arc<dyn PhysicalExpr> = Arc::new(Column::new("lookup", 1));
        let large = Arc::new(BinaryExpr::new(
            Arc::new(BinaryExpr::new(
                Arc::new(BinaryExpr::new(key(), Operator::GtEq, lit(100i64))),
                Operator::And,
                Arc::new(BinaryExpr::new(key(), Operator::LtEq, lit(900i64))),
            )),
            Operator::And,
            lookup,
        ));
        let case: Arc<dyn PhysicalExpr> = Arc::new(
            CaseExpr::try_new(
                Some(key()),
                vec![
                    (
                        lit(0i64),
                        join_filter(&(0..30).map(|i| 2000 + i).collect::<Vec<_>>()),
                    ),
                    (lit(1i64), large),
                ],
                Some(Arc::new(Literal::new(ScalarValue::Boolean(Some(false))))),
            )
            .unwrap(),
        );
        let rewritten = for_pruning(&case);
        assert_eq!(comparisons(&rewritten), 2, "{rewritten}");
        assert_eq!(
            holds(&rewritten, &[100, 555, 2029, 99, 2030]),
            [true, true, true, false, false]
        );
    }
}
