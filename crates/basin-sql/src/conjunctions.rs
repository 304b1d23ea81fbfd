//! Filters' `AND` chains regrouped so DataFusion's short-circuit evaluation does not scatter
//! bitmaps bit by bit.
//!
//! DataFusion 53 evaluates `a AND b AND c AND d` as the left-deep tree `((a AND b) AND c) AND
//! d`. At each `AND` whose left side keeps at most 20% of the rows it copies those rows out of
//! the whole batch, evaluates the right side on them, and scatters the answer back one bit at
//! a time, slicing the array once per run of kept rows (`pre_selection_scatter`). A range
//! filter like TPC-H q06's (`l_shipdate >= .. AND l_shipdate < .. AND l_discount >= .. AND
//! l_discount <= .. AND l_quantity < ..`) keeps 15% after its first two conjuncts, in runs of
//! one or two rows, so it copies the batch three times and scatters three times per batch:
//! about a fifth of q06's CPU in a profile, more than the comparisons themselves (upstream:
//! apache/datafusion#25035 and #25494, not in 53).
//!
//! The rule below rebuilds each chain of a `FilterExec` as `(c1 AND (c2 AND (.. AND ck)))
//! AND d1 AND d2 .. AND e1 AND e2 ..`: the simple conjuncts (one comparison, `IN` list or
//! null test of columns and literals: nothing that can fail or costs more than a comparison
//! per row) right-deep, so each is evaluated over the whole batch and combined a word at a
//! time unless one alone keeps 20% or less (then the rest runs on those rows, with one
//! scatter); then the disjunctions of such tests (`d`, fewest tests first: TPC-H q19's
//! `l_quantity` ranges are six comparisons, and run only on the 7% of rows its
//! `l_shipinstruct` and `l_shipmode` tests keep); then the costly ones (`LIKE`, functions,
//! arithmetic, casts) in their written order. Past the first block the pre-selection pays:
//! each runs only on the rows everything before it kept. `AND` is associative and
//! commutative under SQL's three-valued logic, so the answer is the same.
//!
//! Written here because DataFusion has no setting for its pre-selection threshold.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, Literal, NotExpr,
};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};

#[derive(Debug)]
pub(crate) struct RegroupConjunctions;

impl PhysicalOptimizerRule for RegroupConjunctions {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.as_any().downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            let predicate = regroup(filter.predicate())?;
            if Arc::ptr_eq(&predicate, filter.predicate()) {
                return Ok(Transformed::no(node));
            }
            let rebuilt = FilterExecBuilder::from(filter)
                .with_predicate(predicate)
                .build()?;
            Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "regroup_conjunctions"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `expr` with every `AND` chain in it regrouped; the same `Arc` when nothing changed.
fn regroup(expr: &Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
    if !is_and(expr) {
        let children: Vec<Arc<dyn PhysicalExpr>> = expr.children().into_iter().cloned().collect();
        let regrouped = children.iter().map(regroup).collect::<Result<Vec<_>>>()?;
        if regrouped
            .iter()
            .zip(&children)
            .all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return Ok(expr.clone());
        }
        return expr.clone().with_new_children(regrouped);
    }
    let conjuncts = split_conjunction(expr)
        .into_iter()
        .map(regroup)
        .collect::<Result<Vec<_>>>()?;
    let (cheap, costly): (Vec<_>, Vec<_>) = conjuncts.into_iter().partition(cheap);
    let (simple, mut disjunctions): (Vec<_>, Vec<_>) =
        cheap.into_iter().partition(|c| tests(c) == 1);
    disjunctions.sort_by_key(tests);
    let block = simple
        .into_iter()
        .rev()
        .reduce(|right, left| and(left, right));
    let regrouped = block
        .into_iter()
        .chain(disjunctions)
        .chain(costly)
        .reduce(and)
        .expect("a chain has conjuncts");
    // An unchanged shape keeps the original (and the plan unchanged).
    Ok(if same_shape(&regrouped, expr) {
        expr.clone()
    } else {
        regrouped
    })
}

fn and(left: Arc<dyn PhysicalExpr>, right: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
    Arc::new(BinaryExpr::new(left, Operator::And, right))
}

fn is_and(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.as_any()
        .downcast_ref::<BinaryExpr>()
        .is_some_and(|b| *b.op() == Operator::And)
}

/// Whether `expr` costs about a comparison per row and cannot fail: comparisons, `AND`/`OR`,
/// `NOT`, null tests and `IN` lists over columns and literals.
fn cheap(expr: &Arc<dyn PhysicalExpr>) -> bool {
    let any = expr.as_any();
    let node_cheap = any.is::<Column>()
        || any.is::<Literal>()
        || any.is::<NotExpr>()
        || any.is::<IsNullExpr>()
        || any.is::<IsNotNullExpr>()
        || any.is::<InListExpr>()
        || any.downcast_ref::<BinaryExpr>().is_some_and(|b| {
            matches!(
                b.op(),
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
                    | Operator::And
                    | Operator::Or
            )
        });
    node_cheap && expr.children().into_iter().all(cheap)
}

/// The tests (comparisons, `IN` lists, null tests) a cheap expression's `AND`s, `OR`s and
/// `NOT`s combine.
fn tests(expr: &Arc<dyn PhysicalExpr>) -> usize {
    let any = expr.as_any();
    let connective = any.is::<NotExpr>()
        || any
            .downcast_ref::<BinaryExpr>()
            .is_some_and(|b| matches!(b.op(), Operator::And | Operator::Or));
    if connective {
        expr.children().into_iter().map(tests).sum()
    } else {
        1
    }
}

/// Whether two trees are the same nodes in the same shape (leaves compared by pointer, as
/// `regroup` reuses them).
fn same_shape(a: &Arc<dyn PhysicalExpr>, b: &Arc<dyn PhysicalExpr>) -> bool {
    if Arc::ptr_eq(a, b) {
        return true;
    }
    match (
        a.as_any().downcast_ref::<BinaryExpr>(),
        b.as_any().downcast_ref::<BinaryExpr>(),
    ) {
        (Some(x), Some(y)) if x.op() == y.op() && *x.op() == Operator::And => {
            same_shape(x.left(), y.left()) && same_shape(x.right(), y.right())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    /// 3,000 rows (`a`, `b`, `c` integers with nulls, `s` strings), in batches of 500, in a
    /// session with the rule or without it.
    fn context(rule: bool) -> SessionContext {
        let mut state = SessionStateBuilder::new().with_default_features();
        if rule {
            state = state.with_physical_optimizer_rule(Arc::new(RegroupConjunctions));
        }
        let ctx = SessionContext::new_with_state(state.build());
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
            Field::new("c", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batches = (0..6)
            .map(|part| {
                let rows = (part * 500)..(part * 500 + 500);
                let column = |f: fn(i64) -> Option<i64>| {
                    Arc::new(Int64Array::from(rows.clone().map(f).collect::<Vec<_>>()))
                };
                let strings: Vec<Option<String>> = rows
                    .clone()
                    .map(|i| (i % 11 != 0).then(|| format!("item {}", i * 37 % 1000)))
                    .collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        column(|i| (i % 17 != 0).then_some(i * 7919 % 1000)),
                        column(|i| Some(i * 104_729 % 100)),
                        column(|i| (i % 5 != 0).then_some(i % 13)),
                        Arc::new(StringArray::from(strings)),
                    ],
                )
                .unwrap()
            })
            .collect();
        let table = MemTable::try_new(schema, vec![batches]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    /// The answer of `sql`, and its filter's predicate with every `AND` in parentheses (the
    /// plan's own display leaves them out).
    async fn run(rule: bool, sql: &str) -> (String, String) {
        let df = context(rule).sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let mut predicate = None;
        plan.apply(|node| {
            if let Some(filter) = node.as_any().downcast_ref::<FilterExec>() {
                predicate = Some(shape(filter.predicate()));
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        let answer = pretty_format_batches(&df.collect().await.unwrap())
            .unwrap()
            .to_string();
        (answer, predicate.expect("a filter in the plan"))
    }

    fn shape(expr: &Arc<dyn PhysicalExpr>) -> String {
        match expr.as_any().downcast_ref::<BinaryExpr>() {
            Some(b) if *b.op() == Operator::And => {
                format!("({} AND {})", shape(b.left()), shape(b.right()))
            }
            _ => expr.to_string(),
        }
    }

    /// The filter's shape without the rule and with it, once the two answers are checked
    /// equal and more than `lines` lines long.
    async fn same_answer(sql: &str, lines: usize) -> (String, String) {
        let (plain, plain_shape) = run(false, sql).await;
        let (ruled, ruled_shape) = run(true, sql).await;
        assert_eq!(plain, ruled);
        assert!(
            plain.lines().count() > lines,
            "the query keeps rows: {plain}"
        );
        (plain_shape, ruled_shape)
    }

    #[tokio::test]
    async fn a_range_filter_becomes_right_deep_and_answers_the_same() {
        let sql = "SELECT a, b, c FROM t WHERE a >= 100 AND a < 400 AND b >= 10 AND b <= 60 \
                   AND c < 9 ORDER BY a, b, c";
        let (plain_shape, ruled_shape) = same_answer(sql, 50).await;
        assert_eq!(
            plain_shape,
            "((((a@0 >= 100 AND a@0 < 400) AND b@1 >= 10) AND b@1 <= 60) AND c@2 < 9)"
        );
        assert_eq!(
            ruled_shape,
            "(a@0 >= 100 AND (a@0 < 400 AND (b@1 >= 10 AND (b@1 <= 60 AND c@2 < 9))))"
        );
    }

    #[tokio::test]
    async fn costly_conjuncts_follow_the_cheap_ones_in_their_order() {
        let sql = "SELECT a, s FROM t WHERE s LIKE '%7%' AND a > 200 AND b % 3 = 1 \
                   AND (c IS NULL OR c IN (1, 2, 3)) AND a < 900 ORDER BY a, s";
        let (_, ruled_shape) = same_answer(sql, 10).await;
        assert!(
            ruled_shape.starts_with("((((a@0 > 200 AND a@0 < 900) AND c@2 IS NULL OR ")
                && ruled_shape.ends_with(") AND s@3 LIKE %7%) AND b@1 % 3 = 1)"),
            "{ruled_shape}"
        );
    }

    #[tokio::test]
    async fn disjunctions_follow_the_simple_tests_fewest_tests_first() {
        let sql = "SELECT a, b, c FROM t WHERE (a < 100 OR a > 900 OR b = 5) AND c < 9 \
                   AND (b < 30 OR b > 80) AND a IS NOT NULL ORDER BY a, b, c";
        let (_, ruled_shape) = same_answer(sql, 10).await;
        assert_eq!(
            ruled_shape,
            "(((c@2 < 9 AND a@0 IS NOT NULL) AND b@1 < 30 OR b@1 > 80) \
             AND a@0 < 100 OR a@0 > 900 OR b@1 = 5)"
        );
    }

    #[tokio::test]
    async fn chains_of_two_and_filters_without_and_stay_as_they_are() {
        for sql in [
            "SELECT a FROM t WHERE a > 10 AND b < 50",
            "SELECT a FROM t WHERE a > 10 OR b < 50",
            "SELECT a FROM t WHERE a > 10 AND s LIKE '%1%'",
        ] {
            let (_, plain_shape) = run(false, sql).await;
            let (_, ruled_shape) = run(true, sql).await;
            assert_eq!(plain_shape, ruled_shape, "{sql}");
        }
    }
}
