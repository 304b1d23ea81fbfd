//! A query joined on the maximum (or minimum) of a grouped result it also reads (TPC-H q15:
//! the suppliers whose revenue equals the highest revenue) computes that result once, with
//! the maximum as a window over it.
//!
//! q15's view `revenue0` (lineitem summed by supplier) is inlined twice; DataFusion turns
//! `total_revenue = (SELECT max(total_revenue) FROM revenue0)` into a join with a one-row
//! aggregate, so lineitem is scanned and summed twice:
//!
//! ```text
//! Join: total_revenue = sq.max
//!   Join: s_suppkey = supplier_no             <- supplier ⋈ V
//!     supplier
//!     revenue0: Projection: Aggregate(G) ..   <- V
//!   sq: Aggregate: max(total_revenue)
//!     revenue0: Projection: Aggregate(G) ..   <- V again
//! ```
//!
//! becomes `Filter: total_revenue = m` over the outer side, whose one copy of `Aggregate(G)`
//! carries `m = max(..) OVER ()` up to it.
//!
//! Why the answer cannot change: the one-row side is `max(e)` over projections and aliases of
//! a plan `C` (an `Aggregate` with a group key), so it equals `max(e')` over `C`'s rows, `e'`
//! being `e` read through those projections. The window computes exactly that over all of
//! `C`'s rows, before anything on the outer side drops one, and gives it to every row of `C`.
//! The outer side meets `C` once, and between it and `C` only projections, aliases, filters
//! and inner joins, which pass each row's `m` up unchanged; so every outer row carries the
//! same `m` the join would have paired it with. An aggregate with no group key answers one
//! row even over no rows, so the join kept each outer row whose value equals it (`=`: never a
//! null), which is the filter.
//!
//! Memory: the window holds all of `C`'s rows until the last (reserved in the pool,
//! `window_memory.rs`); `C` is an aggregate, whose own table holds every group at once too.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result};
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::{
    Expr, Join, LogicalPlan, LogicalPlanBuilder, Projection, WindowFunctionDefinition,
};
use datafusion::optimizer::push_down_filter::replace_cols_by_name;
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::joins;

/// The window's column, numbered past any other of its kind in the plan.
const WINDOW_PREFIX: &str = "__basin_extreme_window";

#[derive(Debug, Default)]
pub(crate) struct ExtremeAsWindow;

impl OptimizerRule for ExtremeAsWindow {
    fn name(&self) -> &str {
        "basin_extreme_as_window"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(join) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let [(left, right)] = join.on.as_slice() else {
            return Ok(Transformed::no(plan));
        };
        if !joins::is_inner(join) || join.filter.is_some() {
            return Ok(Transformed::no(plan));
        }
        for (one_is_left, value, extreme) in [(false, left, right), (true, right, left)] {
            // A plan DataFusion cannot build leaves the join as it was.
            if let Ok(Some(rewritten)) = as_window(join, one_is_left, value, extreme) {
                return Ok(Transformed::yes(rewritten));
            }
        }
        Ok(Transformed::no(plan))
    }
}

/// `join` as a filter over its outer side, if its other side (the left one if `one_is_left`)
/// is the one-row extreme of a grouped plan the outer side reads once.
fn as_window(
    join: &Join,
    one_is_left: bool,
    value: &Expr,
    extreme: &Expr,
) -> Result<Option<LogicalPlan>> {
    let (rows, one) = if one_is_left {
        (&join.right, &join.left)
    } else {
        (&join.left, &join.right)
    };
    let (Expr::Column(_), Some(found)) = (extreme, Extreme::find(one)) else {
        return Ok(None);
    };
    if count(rows, &found.input)? != 1 {
        return Ok(None);
    }
    let name = format!("{WINDOW_PREFIX}_{}", numbered(rows)?);
    let window = WindowFunction::new(
        WindowFunctionDefinition::AggregateUDF(found.function.func.clone()),
        vec![found.argument],
    );
    let window = Expr::WindowFunction(Box::new(window)).alias(&name);
    let Some(carried) = carried(rows, &found.input, &window, &name)? else {
        return Ok(None);
    };
    let m = Expr::Column(named(carried.schema(), &name)?);
    // The one-row side's column, as the window's, where the join put it.
    let (qualifier, field) = one.schema().qualified_field(0);
    let extreme_column = m.clone().alias_qualified(qualifier.cloned(), field.name());
    let outer = rows.schema().columns().into_iter().map(Expr::Column);
    let exprs: Vec<Expr> = if one_is_left {
        std::iter::once(extreme_column).chain(outer).collect()
    } else {
        outer.chain(std::iter::once(extreme_column)).collect()
    };
    let built = LogicalPlanBuilder::from(carried)
        .filter(value.clone().eq(m))?
        .project(exprs)?
        .build()?;
    // A plan whose columns differ from the join's leaves the join as it was.
    Ok(Some(built).filter(|p| {
        p.schema()
            .logically_equivalent_names_and_types(&join.schema)
    }))
}

/// A one-row aggregate: the maximum or minimum of one expression of a grouped plan.
struct Extreme {
    /// The grouped plan (an `Aggregate` with a group key).
    input: Arc<LogicalPlan>,
    function: AggregateFunction,
    /// The aggregate's argument, over `input`'s columns.
    argument: Expr,
}

impl Extreme {
    fn find(plan: &LogicalPlan) -> Option<Self> {
        let plan = match plan {
            LogicalPlan::SubqueryAlias(alias) => alias.input.as_ref(),
            plan => plan,
        };
        let LogicalPlan::Aggregate(aggregate) = plan else {
            return None;
        };
        let ([], [expr]) = (
            aggregate.group_expr.as_slice(),
            aggregate.aggr_expr.as_slice(),
        ) else {
            return None;
        };
        let function = joins::plain_aggregate(expr, &["min", "max"])?;
        let [argument] = function.params.args.as_slice() else {
            return None;
        };
        let (input, argument) = read_through(&aggregate.input, argument.clone())?;
        let grouped =
            matches!(input.as_ref(), LogicalPlan::Aggregate(a) if !a.group_expr.is_empty());
        grouped.then_some(Self {
            input,
            function,
            argument,
        })
    }
}

/// The plan under `plan`'s projections and aliases, and `expr` (over `plan`'s columns) as an
/// expression of that plan's columns.
fn read_through(plan: &Arc<LogicalPlan>, expr: Expr) -> Option<(Arc<LogicalPlan>, Expr)> {
    let (input, outputs): (&Arc<LogicalPlan>, Vec<Expr>) = match plan.as_ref() {
        LogicalPlan::SubqueryAlias(alias) => (
            &alias.input,
            alias
                .input
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect(),
        ),
        LogicalPlan::Projection(projection) => (
            &projection.input,
            projection
                .expr
                .iter()
                .map(|e| e.clone().unalias_nested().data)
                .collect(),
        ),
        _ => return Some((plan.clone(), expr)),
    };
    let by_name: HashMap<String, Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .map(|c| c.flat_name())
        .zip(outputs)
        .collect();
    read_through(input, replace_cols_by_name(expr, &by_name).ok()?)
}

/// How many times `input` occurs in `plan`.
fn count(plan: &LogicalPlan, input: &LogicalPlan) -> Result<usize> {
    let mut found = 0;
    plan.apply(|node| {
        if node == input {
            found += 1;
            return Ok(TreeNodeRecursion::Jump);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(found)
}

/// One more than the highest number of a window column of this rule in `plan`.
fn numbered(plan: &LogicalPlan) -> Result<usize> {
    let mut next = 0;
    plan.apply(|node| {
        for field in node.schema().fields() {
            if let Some(n) = field.name().strip_prefix(WINDOW_PREFIX) {
                let n = n.trim_start_matches('_').parse::<usize>().unwrap_or(0);
                next = next.max(n + 1);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(next)
}

/// The column of `schema` named `name` (whatever its qualifier).
fn named(schema: &DFSchema, name: &str) -> Result<Column> {
    let (qualifier, field) = schema.qualified_field_with_unqualified_name(name)?;
    Ok(Column::from((qualifier, field)))
}

/// `plan` with `window` computed over its one copy of `input` and passed up to its output as
/// the column `name`; `None` if something between them could not pass it up unchanged.
fn carried(
    plan: &LogicalPlan,
    input: &LogicalPlan,
    window: &Expr,
    name: &str,
) -> Result<Option<LogicalPlan>> {
    if plan == input {
        let windowed = LogicalPlanBuilder::from(input.clone())
            .window(vec![window.clone()])?
            .build()?;
        return Ok(Some(windowed));
    }
    let passes = match plan {
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) | LogicalPlan::Filter(_) => true,
        LogicalPlan::Join(join) => joins::is_inner(join),
        _ => false,
    };
    if !passes {
        return Ok(None);
    }
    let mut inputs = Vec::with_capacity(2);
    let mut met = false;
    for child in plan.inputs() {
        if !met && count(child, input)? == 1 {
            let Some(child) = carried(child, input, window, name)? else {
                return Ok(None);
            };
            met = true;
            inputs.push(child);
        } else {
            inputs.push(child.clone());
        }
    }
    if !met {
        return Ok(None);
    }
    let rebuilt = match plan {
        LogicalPlan::Projection(projection) => {
            let [input] = inputs.as_slice() else {
                return Ok(None);
            };
            let mut exprs = projection.expr.clone();
            exprs.push(Expr::Column(named(input.schema(), name)?));
            LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input.clone()))?)
        }
        plan => plan.with_new_exprs(plan.expressions(), inputs)?,
    };
    Ok(Some(rebuilt))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{compare, line};

    /// Each key's items, counted (nine keys tie at the highest count, 10).
    const TOTALS: &str = "WITH totals AS \
        (SELECT key, count(*) AS total FROM items WHERE key IS NOT NULL GROUP BY key) ";

    /// q15's shape: the parts whose key's count is the highest of all keys' counts.
    const Q15_SHAPE: &str = "SELECT p.pkey, p.brand, t.total FROM parts p, totals t \
        WHERE p.pkey = t.key AND t.total = (SELECT max(total) FROM totals) ORDER BY p.pkey";

    fn with_totals(query: &str) -> String {
        format!("{TOTALS}{query}")
    }

    #[tokio::test]
    async fn the_highest_count_is_a_window_over_the_counts_and_answers_the_same() {
        let q = compare(&with_totals(Q15_SHAPE)).await;
        q.has_rows();
        assert!(q.windowed());
    }

    #[tokio::test]
    async fn the_lowest_count_too() {
        let q = compare(&with_totals(&Q15_SHAPE.replace("max(total)", "min(total)"))).await;
        q.has_rows();
        assert!(q.windowed());
    }

    /// The outer query keeps only the parts of one brand: the window is still over every
    /// key's count, right above the aggregate, under the join that drops the others.
    #[tokio::test]
    async fn the_extreme_is_over_all_groups_not_those_the_outer_query_keeps() {
        let q = compare(&with_totals(
            &Q15_SHAPE.replace("WHERE", "WHERE p.brand = 3 AND"),
        ))
        .await;
        q.has_rows();
        assert!(q.windowed());
        let plan = &q.ruled_plan;
        let window = line(plan, "WindowAggr");
        assert!(
            plan.lines()
                .nth(window + 1)
                .unwrap()
                .contains("Aggregate: groupBy"),
            "{plan}"
        );
        assert!(line(plan, "Join") < window, "{plan}");
    }

    #[tokio::test]
    async fn a_subquery_with_a_filter_of_its_own_stays_an_aggregate() {
        let q = compare(&with_totals(
            &Q15_SHAPE.replace("FROM totals)", "FROM totals WHERE key < 20)"),
        ))
        .await;
        q.has_rows();
        assert!(!q.windowed());
    }

    #[tokio::test]
    async fn a_sum_or_an_ungrouped_input_stays_an_aggregate() {
        let q = compare(&with_totals(
            &Q15_SHAPE.replace("max(total)", "sum(total) / 36"),
        ))
        .await;
        q.has_rows();
        assert!(!q.windowed());
        let q = compare(
            "SELECT i.key, i.qty FROM items i, parts p WHERE p.pkey = i.key \
            AND i.qty = (SELECT max(qty) FROM items) ORDER BY 1, 2",
        )
        .await;
        q.has_rows();
        assert!(!q.ruled_plan.contains("WindowAggr"), "{}", q.ruled_plan);
    }

    /// Beside a left join, the rows the join extends with nulls would lose their value: the
    /// window is carried only through inner joins.
    #[tokio::test]
    async fn through_an_outer_join_it_stays_an_aggregate() {
        let q = compare(&with_totals(
            "SELECT p.pkey, t.total FROM parts p LEFT JOIN totals t ON p.pkey = t.key \
            WHERE coalesce(t.total, 10) = (SELECT max(total) FROM totals) ORDER BY p.pkey",
        ))
        .await;
        q.has_rows();
        assert!(!q.windowed());
    }
}
