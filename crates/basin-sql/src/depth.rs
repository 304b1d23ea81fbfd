//! How deep an optimized plan is, counted without recursion, and refused past
//! `[sql] max_expression_depth` before it is run.
//!
//! The guard ([`crate::guard`]) bounds the tree a statement's text makes. Plans can grow
//! deeper than their text: views and common table expressions built one on another are
//! inlined, and the optimizer merges projections into nested expressions. Running a plan
//! recurses once per operator (each stream polls its input) and once per expression level
//! (each expression evaluates its children) on the async runtime's threads, whose stacks
//! are fixed. So the plan that will run is measured here, on a planning thread, and one
//! deeper than the limit is refused with an error instead of overflowing a stack.

use std::sync::Arc;

use basin_core::{Error, ErrorKind, Result, Subject};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};

/// The depth of `plan`: the most operators on one path from its root, plus the deepest
/// expression of the last of them (and, for a subquery, the plan inside it).
pub(crate) fn depth(plan: &LogicalPlan) -> usize {
    let mut deepest = 0;
    // Subqueries inside expressions are plans of their own, measured from where they sit.
    let mut plans: Vec<(Arc<LogicalPlan>, usize)> = Vec::new();
    walk(plan, 0, &mut deepest, &mut plans);
    while let Some((plan, above)) = plans.pop() {
        walk(&plan, above, &mut deepest, &mut plans);
    }
    deepest
}

/// Measures `plan` and its inputs, `above` levels below the root; queues its subqueries.
fn walk(
    plan: &LogicalPlan,
    above: usize,
    deepest: &mut usize,
    plans: &mut Vec<(Arc<LogicalPlan>, usize)>,
) {
    let mut stack = vec![(plan, above + 1)];
    while let Some((node, at)) = stack.pop() {
        let mut expressions = 0;
        let _ = node.apply_expressions(|e| {
            expressions = expressions.max(expression_depth(e, at, plans));
            Ok(TreeNodeRecursion::Continue)
        });
        *deepest = (*deepest).max(at + expressions);
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

/// Refuses a plan deeper than `limit`.
pub(crate) fn check(plan: &LogicalPlan, limit: usize) -> Result<()> {
    let depth = depth(plan);
    if depth > limit {
        return Err(Error::new(
            ErrorKind::Limit,
            format!(
                "the query's plan is {depth} deep (operators on one path and the expressions \
                 of the last), past the limit of {limit} (`[sql] max_expression_depth`)"
            ),
        )
        .with_hint(
            "views or WITH queries built on each other many times over, or long chains of \
             operators, make deep plans: materialize a step as a table, or flatten the chain",
        )
        .about(Subject::StatementShape));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        ctx.state().optimize(&plan).unwrap()
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
        let depth = depth(&plan);
        assert!(depth > 300, "{depth}");
        let refused = check(&plan, 200).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Limit);
        check(&plan, depth).unwrap();
    }
}
