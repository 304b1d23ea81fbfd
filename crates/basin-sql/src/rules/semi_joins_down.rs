//! A logical optimizer rule DataFusion does not have: a semi-join goes down to the input its
//! keys come from, below inner joins, projections and filters.
//!
//! DataFusion turns `WHERE o_orderkey IN (SELECT ...)` into a semi-join over the whole `FROM`
//! (TPC-H q18: customer ⋈ orders ⋈ lineitem, 6 M rows), and then builds its hash table from
//! those 6 M joined rows to probe it with the subquery's 9 keys. A semi-join only keeps or
//! drops rows by the columns of one input, so it can filter that input before the joins:
//!
//! ```text
//! LeftSemi: o_orderkey = sq.l_orderkey          Inner: o_orderkey = l_orderkey
//!   Inner: o_orderkey = l_orderkey        =>      Inner: c_custkey = o_custkey
//!     Inner: c_custkey = o_custkey                  customer
//!       customer                                    LeftSemi: o_orderkey = sq.l_orderkey
//!       orders                                        orders
//!     lineitem                                        sq
//!   sq                                            lineitem
//! ```
//!
//! and the joins above it then see 9 orders; their dynamic filters prune lineitem's row groups.
//!
//! Why the answer cannot change: `(A ⋈ B) ⋉ S` keeps a joined row when its `A` part has a
//! match in `S`, which is what `(A ⋉ S) ⋈ B` keeps (the semi-join's condition reads only `A`'s
//! columns and `S`'s). A projection that passes those columns through unchanged commutes with
//! it the same way. Outer joins, anti-joins (whose `NOT IN` form treats nulls specially) and
//! semi-joins whose condition reads both sides of the join below stay where they are.
//!
//! When it pays: below the join, the semi-join probes every row of `A`; above it, only the
//! joined rows. So it moves below a join only when the join's other input `B` drops no rows
//! (no filter, limit or semi-join in it), where the join cannot make `A` smaller; and never
//! below a filter (DataFusion pushes filters into scans, which prune row groups, and then
//! `A` is already as small as it gets).

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::logical_expr::{JoinType, LogicalPlan, Projection};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::joins;

#[derive(Debug, Default)]
pub(crate) struct SemiJoinsDown;

impl OptimizerRule for SemiJoinsDown {
    fn name(&self) -> &str {
        "basin_semi_joins_down"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        // Down from the top, so that a semi-join moved one level is looked at again below.
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(semi) = &plan else {
            return Ok(Transformed::no(plan));
        };
        if semi.join_type != JoinType::LeftSemi || semi.null_aware {
            return Ok(Transformed::no(plan));
        }
        // The columns of the filtered input the semi-join reads.
        let used = joins::columns_read(semi, true);
        if used.is_empty() {
            return Ok(Transformed::no(plan));
        }
        // The semi-join, over another input with the same columns.
        let over = |input: Arc<LogicalPlan>| -> Result<Arc<LogicalPlan>> {
            Ok(Arc::new(joins::rejoin(semi, input, semi.right.clone())?))
        };
        let moved = match semi.left.as_ref() {
            LogicalPlan::Projection(projection) => {
                let passed = used.iter().all(|c| joins::passes_through(projection, c));
                if !passed {
                    return Ok(Transformed::no(plan));
                }
                LogicalPlan::Projection(Projection::try_new(
                    projection.expr.clone(),
                    over(projection.input.clone())?,
                )?)
            }
            LogicalPlan::Join(inner) if inner.join_type == JoinType::Inner => {
                let (left, right) = if used.iter().all(|c| inner.left.schema().has_column(c))
                    && !filters_rows(&inner.right)
                {
                    (over(inner.left.clone())?, inner.right.clone())
                } else if used.iter().all(|c| inner.right.schema().has_column(c))
                    && !filters_rows(&inner.left)
                {
                    (inner.left.clone(), over(inner.right.clone())?)
                } else {
                    return Ok(Transformed::no(plan));
                };
                joins::rejoin(inner, left, right)?
            }
            _ => return Ok(Transformed::no(plan)),
        };
        Ok(Transformed::yes(moved))
    }
}

/// Whether `plan` drops rows anywhere (a filter, a scan's filters, a limit, a semi- or
/// anti-join): then a join with it may drop rows of the other input, and below that join the
/// semi-join would probe rows the join drops anyway (TPC-H q21's lineitem, joined with the
/// suppliers of one nation).
fn filters_rows(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Filter(_) | LogicalPlan::Limit(_) => true,
        LogicalPlan::TableScan(scan) => !scan.filters.is_empty() || scan.fetch.is_some(),
        LogicalPlan::Join(join)
            if matches!(
                join.join_type,
                JoinType::LeftSemi | JoinType::RightSemi | JoinType::LeftAnti | JoinType::RightAnti
            ) =>
        {
            true
        }
        _ => plan.inputs().into_iter().any(filters_rows),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{compare, line};

    /// q18's shape: the `IN` subquery's keys filter `parts` before it meets `items`.
    const Q18_SHAPE: &str = "SELECT p.pkey, p.brand, sum(i.qty) AS s FROM parts p, items i \
        WHERE i.key = p.pkey AND p.pkey IN (SELECT key FROM items GROUP BY key HAVING sum(qty) > 150) \
        GROUP BY p.pkey, p.brand ORDER BY p.pkey";

    #[tokio::test]
    async fn an_in_subquery_filters_its_input_before_the_join_and_answers_the_same() {
        let q = compare(Q18_SHAPE).await;
        q.has_rows();
        // Without the rule the semi-join sits above the inner join; with it, below.
        let depth = |plan: &str, what: &str| {
            let l = plan.lines().nth(line(plan, what)).unwrap();
            l.len() - l.trim_start().len()
        };
        let plain = &q.plain_plan;
        assert!(
            depth(plain, "LeftSemi Join") < depth(plain, "Inner Join"),
            "{plain}"
        );
        let ruled = &q.ruled_plan;
        assert!(
            depth(ruled, "LeftSemi Join") > depth(ruled, "Inner Join"),
            "{ruled}"
        );
    }

    #[tokio::test]
    async fn a_semi_join_stays_above_a_join_with_a_filtered_input() {
        // `i.qty > 10` drops items, so the join may drop parts: the semi-join stays above it.
        let q = compare(&Q18_SHAPE.replace("WHERE i.key", "WHERE i.qty > 10 AND i.key")).await;
        let plan = &q.ruled_plan;
        assert!(
            line(plan, "LeftSemi Join") < line(plan, "Inner Join"),
            "{plan}"
        );
    }

    #[tokio::test]
    async fn a_semi_join_reading_both_sides_of_the_join_below_stays() {
        let q = compare(
            "SELECT p.pkey, i.qty FROM parts p, items i WHERE i.key = p.pkey \
            AND (p.pkey + i.qty) IN (SELECT key FROM items WHERE qty > 40) ORDER BY 1, 2",
        )
        .await;
        let plan = &q.ruled_plan;
        assert!(
            line(plan, "LeftSemi Join") < line(plan, "Inner Join"),
            "{plan}"
        );
    }
}
