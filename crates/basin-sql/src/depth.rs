//! How big and how deep a statement's plan is, counted without recursion, and refused past
//! `[sql] max_plan_nodes` or `max_expression_depth` before it is optimized and run.
//!
//! The guard ([`crate::guard`]) bounds the tree a statement's text makes. Plans can grow
//! bigger and deeper than their text: a view or common table expression read twice is one
//! plan shared by both readers, which the analyzer and optimizer then copy into each, so
//! ten of them each reading the one before twice make a plan of a thousand copies from a
//! few hundred bytes of SQL (forty: a trillion), and rewriting it would hold a planning
//! thread for hours. Running a plan recurses once per operator (each stream polls its
//! input) and once per expression level (each expression evaluates its children) on the
//! async runtime's threads, whose stacks are fixed. So the plan is measured here as it will
//! be copied out, each operator as often as it is reached (a view's plan where it is read),
//! stopping once past the limit, on a planning thread; one past either limit is refused
//! with an error instead of stalling a planning thread or overflowing a stack.

use std::sync::Arc;

use basin_core::{Error, ErrorKind, Subject};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};

/// What a plan measures.
#[derive(Debug, Default)]
pub(crate) struct Measured {
    /// The most operators on one path from its root, plus the deepest expression of the
    /// last of them (and, for a subquery or a view, the plan inside it).
    pub depth: usize,
    /// Its operators, each counted as often as it is reached; past the limit it was
    /// measured with, counting stopped.
    pub nodes: usize,
}

/// Measures `plan`, stopping once it has more than `max_nodes` operators.
pub(crate) fn measure(plan: &LogicalPlan, max_nodes: usize) -> Measured {
    let mut measured = Measured::default();
    // Subqueries inside expressions and views' plans are plans of their own, measured from
    // where they sit.
    let mut plans: Vec<(Arc<LogicalPlan>, usize)> = Vec::new();
    walk(plan, 0, max_nodes, &mut measured, &mut plans);
    while let Some((plan, above)) = plans.pop() {
        if measured.nodes > max_nodes {
            break;
        }
        walk(&plan, above, max_nodes, &mut measured, &mut plans);
    }
    measured
}

/// Measures `plan` and its inputs, `above` levels below the root; queues its subqueries and
/// the plans of the views it reads.
fn walk(
    plan: &LogicalPlan,
    above: usize,
    max_nodes: usize,
    measured: &mut Measured,
    plans: &mut Vec<(Arc<LogicalPlan>, usize)>,
) {
    let mut stack = vec![(plan, above + 1)];
    while let Some((node, at)) = stack.pop() {
        measured.nodes += 1;
        if measured.nodes > max_nodes {
            return;
        }
        let mut expressions = 0;
        let _ = node.apply_expressions(|e| {
            expressions = expressions.max(expression_depth(e, at, plans));
            Ok(TreeNodeRecursion::Continue)
        });
        measured.depth = measured.depth.max(at + expressions);
        // DataFusion inlines a view's plan where the statement reads it as it builds the
        // plan; a scan that still holds one (a source that is not inlined) is read here.
        if let LogicalPlan::TableScan(scan) = node
            && let Some(view) = scan.source.get_logical_plan()
        {
            // The view's plan takes the scan's place.
            plans.push((Arc::new(view.into_owned()), at - 1));
        }
        stack.extend(node.inputs().into_iter().map(|input| (input, at + 1)));
    }
}

/// How deep `expr` is; queues the plans of its subqueries, which sit below it.
fn expression_depth(expr: &Expr, at: usize, plans: &mut Vec<(Arc<LogicalPlan>, usize)>) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(expr, 1)];
    while let Some((e, level)) = stack.pop() {
        deepest = deepest.max(level);
        let subquery = match e {
            Expr::ScalarSubquery(s) => Some(&s.subquery),
            Expr::Exists(e) => Some(&e.subquery.subquery),
            Expr::InSubquery(i) => Some(&i.subquery.subquery),
            Expr::SetComparison(c) => Some(&c.subquery.subquery),
            _ => None,
        };
        if let Some(plan) = subquery {
            plans.push((plan.clone(), at + level));
        }
        let _ = e.apply_children(|child| {
            stack.push((child, level + 1));
            Ok(TreeNodeRecursion::Continue)
        });
    }
    deepest
}

/// The setting a plan broke, when it broke one.
pub(crate) type Broken = (&'static str, Error);

/// Refuses a plan of more than `max_nodes` operators, or deeper than `max_depth`.
pub(crate) fn check(
    plan: &LogicalPlan,
    max_nodes: usize,
    max_depth: usize,
) -> std::result::Result<(), Broken> {
    let Measured { depth, nodes } = measure(plan, max_nodes);
    if nodes > max_nodes {
        let e = Error::new(
            ErrorKind::Limit,
            format!(
                "the query's plan has more than {max_nodes} operators once its views and WITH \
                 queries are copied into each place that reads them, past the limit of \
                 {max_nodes} (`[sql] max_plan_nodes`)"
            ),
        )
        .with_hint(
            "a view or WITH query read several times, built on others read several times, \
             multiplies: materialize a step as a table (a pipeline model), or read each once",
        );
        return Err(("max_plan_nodes", e.about(Subject::StatementShape)));
    }
    if depth > max_depth {
        let e = Error::new(
            ErrorKind::Limit,
            format!(
                "the query's plan is {depth} deep (operators on one path and the expressions \
                 of the last), past the limit of {max_depth} (`[sql] max_expression_depth`)"
            ),
        )
        .with_hint(
            "views or WITH queries built on each other many times over, or long chains of \
             operators, make deep plans: materialize a step as a table, or flatten the chain",
        );
        return Err(("max_expression_depth", e.about(Subject::StatementShape)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::copies::tests::{doubling, refused_by_max_plan_nodes};

    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        ctx.state().optimize(&plan).unwrap()
    }

    fn depth(plan: &LogicalPlan) -> usize {
        measure(plan, usize::MAX).depth
    }

    #[tokio::test]
    async fn shared_with_queries_count_as_often_as_they_are_read_and_counting_stops_early() {
        let ctx = SessionContext::new();
        let small = ctx.state().create_logical_plan(&doubling(3)).await.unwrap();
        let nodes = measure(&small, usize::MAX).nodes;
        // Eight copies of t0's plan (a projection of one empty row, under an alias) and the
        // unions and aliases above them.
        assert!((8 * 3..8 * 3 + 40).contains(&nodes), "{nodes}");
        check(&small, nodes, 1000).unwrap();
        let (setting, e) = check(&small, nodes - 1, 1000).unwrap_err();
        assert_eq!(setting, "max_plan_nodes");
        refused_by_max_plan_nodes(&e);
        // Twelve levels: 4096 copies, measured only up to the limit. (Sixty would be
        // refused before planning, `crate::copies`: planning them takes ever.)
        let big = ctx
            .state()
            .create_logical_plan(&doubling(12))
            .await
            .unwrap();
        assert_eq!(measure(&big, 10_000).nodes, 10_001);
    }

    #[tokio::test]
    async fn a_views_plan_is_measured_where_it_is_read() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE VIEW v0 AS SELECT 1 AS x").await.unwrap();
        for i in 1..=14 {
            let before = i - 1;
            ctx.sql(&format!(
                "CREATE VIEW v{i} AS SELECT x FROM v{before} UNION ALL SELECT x FROM v{before}"
            ))
            .await
            .unwrap();
        }
        let plan = ctx
            .state()
            .create_logical_plan("SELECT count(*) FROM v14")
            .await
            .unwrap();
        assert_eq!(measure(&plan, 10_000).nodes, 10_001);
        let one = ctx
            .state()
            .create_logical_plan("SELECT x FROM v0")
            .await
            .unwrap();
        assert!(
            measure(&one, 10_000).nodes < 10,
            "{:?}",
            measure(&one, 10_000)
        );
    }

    #[tokio::test]
    async fn depth_counts_operators_and_the_deepest_expression() {
        // Four operators (a projection, an alias, another projection, the values) with a
        // column each.
        let column = depth(&plan("SELECT a FROM (VALUES (1)) t(a)").await);
        assert_eq!(column, 4);
        // Twenty terms: nineteen levels of `+` over a column, in the first projection.
        let sum = vec!["a"; 20].join(" + ");
        let chain = depth(&plan(&format!("SELECT {sum} FROM (VALUES (1)) t(a)")).await);
        assert_eq!(chain, 1 + 20);
    }

    #[tokio::test]
    async fn stacked_common_table_expressions_are_as_deep_as_they_stack() {
        let mut sql = "WITH t0 AS (SELECT a FROM (VALUES (1)) v(a))".to_string();
        for i in 1..=300 {
            sql.push_str(&format!(", t{i} AS (SELECT a + 1 AS a FROM t{})", i - 1));
        }
        sql.push_str(" SELECT a FROM t300");
        let plan = plan(&sql).await;
        let depth = measure(&plan, usize::MAX).depth;
        assert!(depth > 300, "{depth}");
        let (setting, refused) = check(&plan, usize::MAX, 200).unwrap_err();
        assert_eq!(
            (setting, refused.kind()),
            ("max_expression_depth", ErrorKind::Limit)
        );
        check(&plan, usize::MAX, depth).unwrap();
    }
}
