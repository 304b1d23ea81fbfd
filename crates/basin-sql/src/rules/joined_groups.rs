//! A logical optimizer rule DataFusion does not have: aggregate only the groups a join keeps.
//!
//! A correlated subquery such as TPC-H q17's `l_quantity < (SELECT 0.2 * avg(l_quantity)
//! FROM lineitem WHERE l_partkey = p_partkey)` is decorrelated into an aggregate of the whole
//! table by the correlated key, inner-joined with the outer query on that key:
//!
//! ```text
//! Inner Join: p_partkey = sq.l_partkey
//!   (lineitem ⋈ Filter(part: p_brand = .. AND p_container = ..))    -- a few thousand rows
//!   SubqueryAlias sq: Aggregate groupBy=[l_partkey] over lineitem   -- 200,000 groups of 6 M rows
//! ```
//!
//! The join keeps only the groups whose key the other side has. When the other side's key
//! comes from a filtered input (`Filter(part)`), this rule puts a semi-join with that input's
//! keys under the aggregate, so it aggregates only the rows of groups that can survive:
//!
//! ```text
//!   SubqueryAlias sq: Aggregate groupBy=[l_partkey]
//!     LeftSemi Join: l_partkey = __basin_group_keys.p_partkey
//!       lineitem
//!       SubqueryAlias __basin_group_keys: Projection p_partkey: Filter(part: ..)
//! ```
//!
//! Why the answer cannot change: a group's aggregate depends only on the rows with its key,
//! and the semi-join keeps every row of a key it keeps. The keys it keeps are a superset of
//! those the join can match (the filtered input's keys before any further join), and a group
//! it drops has a key the join would not have matched either (nulls never match: the rule
//! applies only to joins where null equals nothing). The filtered input is read twice, so the
//! rule applies only when its filter holds an equality, an `IN` list with constants or a
//! `LIKE 'prefix%'`, the shape of a selective filter on a small side; `docs/benchmarks/sql.md`
//! has the A/B.
//!
//! The keys are followed across joins: through the side the other key comes from, or, when
//! that side has no such filter, through an equi-join's other key (q20's partsupp keys are
//! those an `IN (SELECT p_partkey FROM part WHERE p_name LIKE ..)` keeps). The semi-join goes
//! as far down the aggregate's input as its group column comes from one side of inner joins:
//! next to the scan, before joins with other tables (q02's subquery).
//!
//! DataFusion's dynamic join filters reach the aggregate's scan too, but they prune row
//! groups by their statistics only, which random keys never exclude.
//!
//! q17's and q02's aggregates no longer come here: their outer queries read the aggregated
//! rows themselves, so `group_window.rs`, which runs first, turns each into a window over the
//! outer rows and the aggregate is gone. This rule takes the others (q20's sum, and any
//! aggregate over rows the outer query does not read).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, NullEquality, Result};
use datafusion::logical_expr::{
    Expr, Join, JoinConstraint, JoinType, LogicalPlan, LogicalPlanBuilder,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::joins;

/// The alias of the keys' subquery; also how the rule recognises its own work.
const KEYS_ALIAS: &str = "__basin_group_keys";

#[derive(Debug, Default)]
pub(crate) struct AggregateJoinedGroupsOnly;

impl OptimizerRule for AggregateJoinedGroupsOnly {
    fn name(&self) -> &str {
        "basin_aggregate_joined_groups_only"
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
        if !joins::is_inner(join) {
            return Ok(Transformed::no(plan));
        }
        for (left_key, right_key) in &join.on {
            let (Expr::Column(left_key), Expr::Column(right_key)) = (left_key, right_key) else {
                continue;
            };
            // The aggregate on either side; the keys from the other.
            for (aggregated, aggregated_key, other, other_key, aggregate_is_left) in [
                (&join.left, left_key, &join.right, right_key, true),
                (&join.right, right_key, &join.left, left_key, false),
            ] {
                let Some(group_column) = group_column(aggregated, aggregated_key) else {
                    continue;
                };
                let Some((keys, key)) = filtered_keys(other, other_key) else {
                    continue;
                };
                let Some(new_side) = semi_join_under_aggregate(
                    aggregated,
                    aggregated_key,
                    &group_column,
                    &keys,
                    &key,
                )?
                else {
                    continue;
                };
                let (left, right) = if aggregate_is_left {
                    (Arc::new(new_side), join.right.clone())
                } else {
                    (join.left.clone(), Arc::new(new_side))
                };
                return Ok(Transformed::yes(joins::rejoin(join, left, right)?));
            }
        }
        Ok(Transformed::no(plan))
    }
}

/// The column of the aggregate's input that `column` (an output of `plan`) is a plain
/// group-by column of, following projections and aliases down to the aggregate.
fn group_column(plan: &LogicalPlan, column: &Column) -> Option<Column> {
    match plan {
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            group_column(plan.inputs()[0], &passed_through(plan, column)?)
        }
        LogicalPlan::Aggregate(aggregate) => {
            if aggregate
                .group_expr
                .iter()
                .any(|e| matches!(e, Expr::GroupingSet(_)))
                || already_filtered(&aggregate.input)
            {
                return None;
            }
            let index = aggregate.schema.index_of_column(column).ok()?;
            match aggregate.group_expr.get(index)? {
                Expr::Column(c) => Some(c.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether this rule already put its semi-join somewhere in `input`.
fn already_filtered(input: &LogicalPlan) -> bool {
    input
        .exists(|plan| {
            Ok(matches!(plan, LogicalPlan::SubqueryAlias(a)
                if a.alias.table().starts_with(KEYS_ALIAS)))
        })
        .unwrap_or(true)
}

/// The input column a projection or an alias passes `column` through from, if it is passed
/// through unchanged (a plain column, perhaps renamed).
fn passed_through(plan: &LogicalPlan, column: &Column) -> Option<Column> {
    let index = plan.schema().index_of_column(column).ok()?;
    match plan {
        LogicalPlan::Projection(projection) => match projection.expr.get(index)? {
            Expr::Column(c) => Some(c.clone()),
            Expr::Alias(alias) => match alias.expr.as_ref() {
                Expr::Column(c) => Some(c.clone()),
                _ => None,
            },
            _ => None,
        },
        LogicalPlan::SubqueryAlias(alias) => {
            Some(Column::from(alias.input.schema().qualified_field(index)))
        }
        _ => None,
    }
}

/// A filtered plan below `plan` whose values of the returned column include every value
/// `column` takes in `plan`'s output: followed through projections, aliases, and the side of
/// inner and semi joins the column comes from, down to a selective filter.
fn filtered_keys(plan: &LogicalPlan, column: &Column) -> Option<(LogicalPlan, Column)> {
    match plan {
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            filtered_keys(plan.inputs()[0], &passed_through(plan, column)?)
        }
        LogicalPlan::Join(join) => {
            if join.null_equality != NullEquality::NullEqualsNothing {
                return None;
            }
            let column_is_left = match join.join_type {
                JoinType::Inner => join.left.schema().has_column(column),
                JoinType::LeftSemi => true,
                JoinType::RightSemi => false,
                _ => return None,
            };
            let (side, other) = if column_is_left {
                (&join.left, &join.right)
            } else {
                (&join.right, &join.left)
            };
            // The column's own side; else, when the column is an equi-join key, the other
            // side's key: a row the join keeps has a key the other side has (q20's
            // `ps_partkey IN (SELECT p_partkey FROM part WHERE ..)`).
            filtered_keys(side, column).or_else(|| {
                let paired = join.on.iter().find_map(|(l, r)| {
                    let (mine, theirs) = if column_is_left { (l, r) } else { (r, l) };
                    match (mine, theirs) {
                        (Expr::Column(mine), Expr::Column(theirs)) if mine == column => {
                            Some(theirs.clone())
                        }
                        _ => None,
                    }
                })?;
                filtered_keys(other, &paired)
            })
        }
        LogicalPlan::Filter(filter) if joins::selective(&filter.predicate) => {
            Some((plan.clone(), column.clone()))
        }
        LogicalPlan::TableScan(scan) if scan.filters.iter().any(joins::selective) => {
            Some((plan.clone(), column.clone()))
        }
        _ => None,
    }
}

/// `plan` (the aggregate side, down from the join) with a semi-join of the aggregate's input
/// against `keys` on `group_column`; the same output schema.
fn semi_join_under_aggregate(
    plan: &LogicalPlan,
    column: &Column,
    group_column: &Column,
    keys: &LogicalPlan,
    key: &Column,
) -> Result<Option<LogicalPlan>> {
    match plan {
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            let Some(below) = passed_through(plan, column) else {
                return Ok(None);
            };
            let Some(input) =
                semi_join_under_aggregate(plan.inputs()[0], &below, group_column, keys, key)?
            else {
                return Ok(None);
            };
            Ok(Some(plan.with_new_exprs(plan.expressions(), vec![input])?))
        }
        LogicalPlan::Aggregate(aggregate) => {
            // A name of its own per use, so that two rewrites in one query never clash.
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let alias = format!("{KEYS_ALIAS}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
            let keys = LogicalPlanBuilder::from(keys.clone())
                .project(vec![Expr::Column(key.clone())])?
                .alias(alias.as_str())?
                .build()?;
            let key = Column::new(Some(alias.as_str()), key.name.as_str());
            let input = semi_join_at_scan(&aggregate.input, group_column, &keys, &key)?;
            Ok(Some(plan.with_new_exprs(plan.expressions(), vec![input])?))
        }
        _ => Ok(None),
    }
}

/// `input` with a semi-join against `keys` on `column`, put as far down as `column` can be
/// followed through inner joins, filters and projections that pass it: next to the scan,
/// before joins with other tables (q02's subquery joins partsupp with supplier, nation and
/// region before its aggregate; its part keys keep 0.4% of partsupp).
fn semi_join_at_scan(
    input: &Arc<LogicalPlan>,
    column: &Column,
    keys: &LogicalPlan,
    key: &Column,
) -> Result<LogicalPlan> {
    let below = match input.as_ref() {
        LogicalPlan::Join(join) if join.join_type == JoinType::Inner => {
            let (left, right) = if join.left.schema().has_column(column) {
                (
                    Arc::new(semi_join_at_scan(&join.left, column, keys, key)?),
                    join.right.clone(),
                )
            } else if join.right.schema().has_column(column) {
                (
                    join.left.clone(),
                    Arc::new(semi_join_at_scan(&join.right, column, keys, key)?),
                )
            } else {
                return semi_join(input, column, keys, key);
            };
            return joins::rejoin(join, left, right);
        }
        LogicalPlan::Filter(filter) => &filter.input,
        LogicalPlan::Projection(projection) if joins::passes_through(projection, column) => {
            &projection.input
        }
        _ => return semi_join(input, column, keys, key),
    };
    let new_input = semi_join_at_scan(below, column, keys, key)?;
    input.with_new_exprs(input.expressions(), vec![new_input])
}

fn semi_join(
    input: &Arc<LogicalPlan>,
    column: &Column,
    keys: &LogicalPlan,
    key: &Column,
) -> Result<LogicalPlan> {
    Ok(LogicalPlan::Join(Join::try_new(
        input.clone(),
        Arc::new(keys.clone()),
        vec![(Expr::Column(column.clone()), Expr::Column(key.clone()))],
        None,
        JoinType::LeftSemi,
        JoinConstraint::On,
        NullEquality::NullEqualsNothing,
        false,
    )?))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{compare, line};

    const Q17_SHAPE: &str = "SELECT i.key, sum(i.qty) AS s, count(*) AS n FROM items i, parts p \
        WHERE p.pkey = i.key AND p.brand = 1 \
        AND i.qty < (SELECT 0.05 * sum(qty) FROM items WHERE key = p.pkey) \
        GROUP BY i.key ORDER BY i.key";

    #[tokio::test]
    async fn a_correlated_aggregate_reads_only_the_joined_groups_and_answers_the_same() {
        let q = compare(Q17_SHAPE).await;
        q.has_rows();
        assert!(!q.plain_plan.contains("LeftSemi"), "{}", q.plain_plan);
        line(
            &q.ruled_plan,
            "LeftSemi Join: items.key = __basin_group_keys",
        );
    }

    #[tokio::test]
    async fn without_a_selective_filter_on_the_other_side_nothing_changes() {
        // `brand > 1` is no equality: the keys would come from a scan as large as the join.
        let q = compare(&Q17_SHAPE.replace("p.brand = 1", "p.brand > 1")).await;
        assert!(
            !q.ruled_plan.contains("__basin_group_keys"),
            "{}",
            q.ruled_plan
        );
    }

    #[tokio::test]
    async fn keys_kept_by_a_semi_join_with_a_prefix_like_filter_the_groups_too() {
        // q20's shape: the outer keys are those an `IN` subquery over a `LIKE 'prefix%'`
        // filter keeps.
        let q = compare(
            "SELECT p.pkey, p.brand FROM parts p \
            WHERE p.pkey IN (SELECT pkey FROM parts WHERE CAST(pkey AS VARCHAR) LIKE '1%') \
            AND p.brand * 100 > (SELECT sum(qty) FROM items WHERE key = p.pkey) ORDER BY p.pkey",
        )
        .await;
        q.has_rows();
        line(
            &q.ruled_plan,
            "LeftSemi Join: items.key = __basin_group_keys",
        );
    }

    #[tokio::test]
    async fn the_semi_join_goes_below_the_joins_of_the_aggregated_input() {
        // q02's subquery: the grouped table is joined with others before its aggregate.
        let q = compare(
            "SELECT p.pkey, g.s FROM parts p, \
            (SELECT i.key AS k, sum(i.qty) AS s FROM items i, parts b \
             WHERE i.qty = b.pkey AND b.brand < 3 GROUP BY i.key) g \
            WHERE g.k = p.pkey AND p.brand = 1 ORDER BY p.pkey",
        )
        .await;
        q.has_rows();
        let plan = &q.ruled_plan;
        let inner = line(plan, "Inner Join: i.qty = b.pkey");
        let semi = line(plan, "LeftSemi Join: i.key = __basin_group_keys");
        assert!(
            inner < semi,
            "the semi-join is under the inner join: {plan}"
        );
    }

    #[tokio::test]
    async fn an_aggregate_grouped_by_an_expression_is_left_alone() {
        let q = compare(
            "SELECT p.pkey, g.s FROM parts p, \
            (SELECT key % 7 AS k, sum(qty) AS s FROM items GROUP BY key % 7) g \
            WHERE g.k = p.pkey AND p.brand = 2 ORDER BY p.pkey",
        )
        .await;
        assert!(
            !q.ruled_plan.contains("__basin_group_keys"),
            "{}",
            q.ruled_plan
        );
    }
}
