//! The rule on real Parquet files and joins, and the rewrite on its own.

use std::sync::Arc;

use arrow::array::{BooleanArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, Column, InListExpr, Literal, lit,
};
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr, collect};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::{MAX_TERMS, PruneByJoinKeys, for_pruning};

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
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap();
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
