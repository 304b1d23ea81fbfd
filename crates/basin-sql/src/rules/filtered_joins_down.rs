//! A logical optimizer rule for the join order DataFusion takes from the `FROM` list: a join
//! with a filtered table moves down to the table its keys meet.
//!
//! DataFusion joins tables in the order the query lists them. TPC-H q07 lists the two
//! nations last, so supplier ⋈ lineitem ⋈ orders ⋈ customer (1.8 M rows) is built first and
//! only then joined with the supplier's nation, of which the filter keeps two:
//!
//! ```text
//! Inner: s_nationkey = n1.n_nationkey              Projection (the same columns, in order)
//!   Inner: o_custkey = c_custkey                     Inner: o_custkey = c_custkey
//!     Inner: l_orderkey = o_orderkey          =>       Inner: l_orderkey = o_orderkey
//!       Inner: s_suppkey = l_suppkey                     Inner: s_suppkey = l_suppkey
//!         supplier                                         Inner: s_nationkey = n1.n_nationkey
//!         lineitem                                           supplier
//!       orders                                               n1: Filter(nation)
//!     customer                                             lineitem
//!   n1: Filter(nation)                                   orders
//!                                                      customer
//! ```
//!
//! so that 800 suppliers, not 10,000, meet lineitem, and every join above sees a twelfth of the
//! rows.
//!
//! Why the answer cannot change: inner joins are associative and commutative, so
//! `(A ⋈p B) ⋈q C` equals `(A ⋈q C) ⋈p B` when `q` reads only `A`'s and `C`'s columns. The
//! projections on the way down pass `C`'s columns through, and one projection on top puts the
//! columns back in their order.
//!
//! When it applies: `C` is a filtered table (a scan with a filter, under projections or an
//! alias) or a join of two tables of which one is filtered (q05's nations joined with the
//! one region the query keeps, once the rule has put them together), the join's condition
//! reads columns of one table below (followed through inner joins and projections that pass
//! them unchanged), and that table lies below at least one other join. Where that table is
//! joined to a tree of joins by a key equal to the column the condition reads (q05:
//! `c_nationkey = s_nationkey` joins supplier; the nations meet `s_nationkey`), `C` goes down
//! that tree on the equal column instead, to the table deepest in the plan (customer), so the
//! rows are cut before the big joins rather than after. Another filtered table or pair on
//! the way stops it, since which of the two filters more is not known here, with one
//! exception: when the table it meets there has no filter and its own tables hold fewer rows
//! (the snapshots' counts), it goes onto that table, below the other (q07's nations onto
//! supplier, below the filtered lineitem: 800 suppliers meet it, not 10,000; q05's nations
//! onto customer, below the filtered orders). Anything else (outer joins, aggregates, unions
//! on the way) leaves the plan as it is.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan, Projection};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::joins;

#[derive(Debug, Default)]
pub(crate) struct FilteredJoinsDown;

impl OptimizerRule for FilteredJoinsDown {
    fn name(&self) -> &str {
        "basin_filtered_joins_down"
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
        if join.join_type != JoinType::Inner || join.null_aware {
            return Ok(Transformed::no(plan));
        }
        // The filtered table on either side; the tree it goes down into on the other.
        for filtered_is_right in [true, false] {
            let (tree, filtered) = match filtered_is_right {
                true => (&join.left, &join.right),
                false => (&join.right, &join.left),
            };
            if !filtered_relation(filtered)
                || !matches!(
                    tree.as_ref(),
                    LogicalPlan::Join(_) | LogicalPlan::Projection(_)
                )
            {
                continue;
            }
            // The tree is the join's left input when the filtered table is its right.
            let used = joins::columns_read(join, filtered_is_right);
            if used.is_empty() {
                continue;
            }
            let mut descent = Descent {
                join,
                filtered,
                filtered_is_right,
                used,
                renamed: HashMap::new(),
                joins_passed: 0,
            };
            let Some(moved) = descent.down(tree)? else {
                continue;
            };
            if descent.joins_passed == 0 {
                continue; // already next to its table
            }
            // The join's columns, in the join's order.
            let columns = join
                .schema
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            return Ok(Transformed::yes(LogicalPlan::Projection(
                Projection::try_new(columns, Arc::new(moved))?,
            )));
        }
        Ok(Transformed::no(plan))
    }
}

/// A table with a filter: a scan with filters pushed into it, or a filter over a scan, under
/// projections and aliases.
fn filtered_table(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) => {
            filtered_table(plan.inputs()[0])
        }
        // A filter that keeps every row is none: decorrelating q11's scalar subquery leaves a
        // `Filter: true` over `partsupp` (and `true` among its scan's filters after), which
        // made the rule stop above that scan as if it met a second filtered table.
        LogicalPlan::Filter(filter) if keeps_all(&filter.predicate) => {
            filtered_table(&filter.input)
        }
        LogicalPlan::Filter(filter) => scan(&filter.input),
        LogicalPlan::TableScan(table) => !table.filters.iter().all(keeps_all),
        _ => false,
    }
}

/// A filtered table, or a join of two tables of which one is filtered (q05's region joined
/// with its nations): few rows either way, so worth joining early.
fn filtered_relation(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) => {
            filtered_relation(plan.inputs()[0])
        }
        LogicalPlan::Join(join) if join.join_type == JoinType::Inner => {
            let (left, right) = (join.left.as_ref(), join.right.as_ref());
            table(left) && table(right) && (filtered_table(left) || filtered_table(right))
        }
        _ => filtered_table(plan),
    }
}

/// A table, filtered or not, under projections and aliases.
fn table(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) | LogicalPlan::Filter(_) => {
            table(plan.inputs()[0])
        }
        LogicalPlan::TableScan(_) => true,
        _ => false,
    }
}

/// Whether `predicate` is the literal `true`.
fn keeps_all(predicate: &Expr) -> bool {
    matches!(
        predicate,
        Expr::Literal(ScalarValue::Boolean(Some(true)), _)
    )
}

/// A table with no filter, under projections and aliases. Joining a filtered relation with
/// it first costs at most a pass over rows the query reads anyway, and then only the rows the
/// filtered relation keeps meet the other filtered input (q07: 800 of the 10,000 suppliers
/// meet the filtered lineitem, not all of them).
fn unfiltered_table(plan: &LogicalPlan) -> bool {
    table(plan) && !filtered_table(plan)
}

/// Whether the tables of `a` hold fewer rows than those of `b`, as their snapshots say;
/// false when either is not known.
fn fewer_rows(a: &LogicalPlan, b: &LogicalPlan) -> bool {
    matches!((rows(a), rows(b)), (Some(a), Some(b)) if a < b)
}

/// The rows the tables of a table or a join of tables hold, before any filter.
fn rows(plan: &LogicalPlan) -> Option<usize> {
    match plan {
        LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) | LogicalPlan::Filter(_) => {
            rows(plan.inputs()[0])
        }
        LogicalPlan::Join(join) => Some(rows(&join.left)? + rows(&join.right)?),
        LogicalPlan::TableScan(scan) => source_as_provider(&scan.source)
            .ok()?
            .statistics()?
            .num_rows
            .get_value()
            .copied(),
        _ => None,
    }
}

fn scan(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(p) => scan(&p.input),
        LogicalPlan::TableScan(_) => true,
        _ => false,
    }
}

/// The way down to the table the join's condition reads.
struct Descent<'a> {
    join: &'a Join,
    filtered: &'a Arc<LogicalPlan>,
    filtered_is_right: bool,
    /// The columns of the tree the join's condition reads, as named where the descent is.
    used: HashSet<Column>,
    /// The join's keys the descent replaced by columns equal to them (see `equal_below`).
    renamed: HashMap<Column, Column>,
    joins_passed: usize,
}

impl Descent<'_> {
    /// `plan` with the join moved to the table below it that holds every used column, and
    /// the filtered table's columns passed up; `None` if there is no such way.
    fn down(&mut self, plan: &Arc<LogicalPlan>) -> Result<Option<LogicalPlan>> {
        match plan.as_ref() {
            LogicalPlan::Projection(projection) => {
                let passed = self
                    .used
                    .iter()
                    .all(|c| joins::passes_through(projection, c));
                if !passed {
                    return Ok(None);
                }
                let Some(input) = self.down(&projection.input)? else {
                    return Ok(None);
                };
                let mut expr = projection.expr.clone();
                expr.extend(
                    self.filtered
                        .schema()
                        .columns()
                        .into_iter()
                        .map(Expr::Column),
                );
                Ok(Some(LogicalPlan::Projection(Projection::try_new(
                    expr,
                    Arc::new(input),
                )?)))
            }
            LogicalPlan::Join(inner) if inner.join_type == JoinType::Inner => {
                self.equal_below(inner);
                let into_left = self.holds_all(&inner.left);
                let into_right = !into_left && self.holds_all(&inner.right);
                let (target, other) = match into_left {
                    true => (&inner.left, &inner.right),
                    false => (&inner.right, &inner.left),
                };
                // The other side filtered too: the join passes it only onto a table with no
                // filter, and only if its own tables hold fewer rows, so that of two filtered
                // inputs only one can go below the other (each moving below the other never
                // ended: q02's region and nations, and its part and partsupp, once did).
                let stops = filtered_relation(other)
                    && !(unfiltered_table(target) && fewer_rows(self.filtered, other));
                if !(into_left || into_right) || stops {
                    // The condition reads both sides, or the other side stops it: the join
                    // goes here.
                    return self.here(plan).map(Some);
                }
                let moved = if into_left {
                    let Some(left) = self.down(&inner.left)? else {
                        return Ok(None);
                    };
                    joins::rejoin(inner, Arc::new(left), inner.right.clone())?
                } else {
                    let Some(right) = self.down(&inner.right)? else {
                        return Ok(None);
                    };
                    joins::rejoin(inner, inner.left.clone(), Arc::new(right))?
                };
                self.joins_passed += 1;
                Ok(Some(moved))
            }
            LogicalPlan::Join(_) => Ok(None),
            // A table, a filter, or anything else that holds the columns: the join goes here.
            _ => self.here(plan).map(Some),
        }
    }

    fn holds_all(&self, plan: &LogicalPlan) -> bool {
        self.used.iter().all(|c| plan.schema().has_column(c))
    }

    /// At `inner`, whose side that is one table holds the used columns: if `inner`'s keys
    /// make each of them equal to a column of its other side, a tree of joins, the join goes
    /// on down that tree with those columns instead. q05 joins ASIA's nations on
    /// `s_nationkey`, and `c_nationkey = s_nationkey` joins the suppliers: the nations go
    /// to `customer`, deep in the tree, so the orders that meet lineitem are ASIA's, a fifth.
    /// The answer is the same: inner joins with `x = y` and `y = z` keep the rows that
    /// `x = y` and `x = z` keep. Only plain column keys of the join's own `on` are replaced.
    fn equal_below(&mut self, inner: &Join) {
        let keys_only = self
            .join
            .filter
            .as_ref()
            .is_none_or(|f| f.column_refs().iter().all(|c| !self.used.contains(*c)));
        if !keys_only {
            return;
        }
        for (table_side, tree_side) in [(&inner.right, &inner.left), (&inner.left, &inner.right)] {
            if !table(table_side) || table(tree_side) || !self.holds_all(table_side) {
                continue;
            }
            let mut renamed = HashMap::new();
            for used in &self.used {
                let equal = inner.on.iter().find_map(|(l, r)| match (l, r) {
                    (Expr::Column(l), Expr::Column(r)) if l == used => Some(r),
                    (Expr::Column(l), Expr::Column(r)) if r == used => Some(l),
                    _ => None,
                });
                match equal {
                    Some(c) if tree_side.schema().has_column(c) => {
                        renamed.insert(used.clone(), c.clone());
                    }
                    _ => return,
                }
            }
            self.used = renamed.values().cloned().collect();
            if self.renamed.is_empty() {
                self.renamed = renamed;
            } else {
                // Renamed before: the join's keys map to the used columns, renamed again.
                for to in self.renamed.values_mut() {
                    *to = renamed[to].clone();
                }
            }
            return;
        }
    }

    /// The join, over `plan` instead of the tree it was over, its keys renamed as the
    /// descent renamed them.
    fn here(&self, plan: &Arc<LogicalPlan>) -> Result<LogicalPlan> {
        let (left, right) = match self.filtered_is_right {
            true => (plan.clone(), self.filtered.clone()),
            false => (self.filtered.clone(), plan.clone()),
        };
        if self.renamed.is_empty() {
            return joins::rejoin(self.join, left, right);
        }
        let rename = |e: &Expr| {
            e.clone()
                .transform(|e| match e {
                    Expr::Column(c) if self.renamed.contains_key(&c) => {
                        Ok(Transformed::yes(Expr::Column(self.renamed[&c].clone())))
                    }
                    e => Ok(Transformed::no(e)),
                })
                .map(|t| t.data)
        };
        let on = self
            .join
            .on
            .iter()
            .map(|(l, r)| Ok((rename(l)?, rename(r)?)))
            .collect::<Result<Vec<_>>>()?;
        let renamed = Join {
            on,
            ..self.join.clone()
        };
        joins::rejoin(&renamed, left, right)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{compare, line};

    /// q07's shape: the filtered table comes last in `FROM`, its key meets the first table.
    const Q07_SHAPE: &str = "SELECT i.key, count(*) AS n, sum(j.qty) AS s \
        FROM items i, items j, parts p \
        WHERE i.key = j.key AND p.pkey = i.key AND p.brand = 1 \
        GROUP BY i.key ORDER BY i.key";

    /// Whether the join whose line holds `first` comes below (is joined before) the one whose
    /// line holds `then` in `plan`.
    fn joined_before(plan: &str, first: &str, then: &str) -> bool {
        line(plan, first) > line(plan, then)
    }

    /// The line of the plan that joins `parts`, and of the join of the two `items`.
    fn lines(plan: &str) -> (usize, usize) {
        (line(plan, "= p.pkey"), line(plan, "i.key = j.key"))
    }

    /// Runs a query of Q07_SHAPE's kind and checks that parts p are joined last without the
    /// rule and first with it.
    async fn parts_go_first(sql: &str) {
        let q = compare(sql).await;
        q.has_rows();
        let (parts, items) = lines(&q.plain_plan);
        assert!(
            parts < items,
            "parts are joined last without the rule: {}",
            q.plain_plan
        );
        let (parts, items) = lines(&q.ruled_plan);
        assert!(
            parts > items,
            "parts are joined first with it: {}",
            q.ruled_plan
        );
    }

    #[tokio::test]
    async fn a_join_with_a_filtered_table_goes_down_to_the_table_its_key_meets() {
        parts_go_first(Q07_SHAPE).await;
    }

    #[tokio::test]
    async fn a_filter_that_keeps_every_row_does_not_stop_the_join_going_down() {
        // q11's shape: decorrelating the scalar subquery of `HAVING` leaves `Filter: true`
        // over the first table of the outer query (`items`, with no alias), and the filtered
        // table meets the second (`j`, as nation meets supplier).
        let q = compare(
            "SELECT items.key, sum(j.qty) AS s FROM items, items j, parts p \
            WHERE items.key = j.key AND p.pkey = j.qty AND p.brand = 1 GROUP BY items.key \
            HAVING sum(j.qty) > (SELECT sum(qty) * 0.0001 FROM items) ORDER BY items.key",
        )
        .await;
        q.has_rows();
        assert!(
            joined_before(&q.ruled_plan, "= p.pkey", "items.key = j.key"),
            "parts are joined first with it: {}",
            q.ruled_plan
        );
    }

    #[tokio::test]
    async fn two_filtered_tables_meeting_one_table_are_planned_once() {
        // Each could go below the other; moving them in turn never ended (a first version).
        compare(
            "SELECT i.key, count(*) AS n FROM items i, items j, parts p, parts q \
            WHERE i.key = j.key AND p.pkey = i.key AND q.pkey = i.key AND p.brand = 1 \
            AND q.brand < 3 GROUP BY i.key ORDER BY i.key",
        )
        .await
        .has_rows();
    }

    #[tokio::test]
    async fn a_filtered_join_goes_down_through_a_key_equal_to_its_own() {
        // q05's shape: `p ⋈ q` (q filtered, as region with its nations) meets `k.qty`, and
        // `k` joins the tree with `i.qty = k.qty` (as supplier with `c_nationkey`): the pair
        // goes down to `i` (as customer), first in the tree, on `i.qty`.
        let q = compare(
            "SELECT i.key, count(*) AS n FROM items i, items j, items k, parts p, parts q \
            WHERE i.key = j.key AND j.key = k.key AND i.qty = k.qty AND k.qty = p.pkey \
            AND p.brand = q.pkey AND q.brand = 1 GROUP BY i.key ORDER BY i.key",
        )
        .await;
        q.has_rows();
        assert!(!q.plain_plan.contains("i.qty = p.pkey"), "{}", q.plain_plan);
        assert!(
            joined_before(&q.ruled_plan, "i.qty = p.pkey", "i.key = j.key"),
            "the pair is joined with i first: {}",
            q.ruled_plan
        );
    }

    #[tokio::test]
    async fn two_filtered_joins_meeting_each_other_are_planned_once() {
        // q02's shape: `a ⋈ i` (a filtered, as part with partsupp) and `p ⋈ q` (q filtered,
        // as region with its nations) each could go below the other.
        compare(
            "SELECT i.key, count(*) AS n FROM parts a, items i, items k, parts p, parts q \
            WHERE a.pkey = i.key AND a.brand = 1 AND i.qty = k.key AND k.qty = p.pkey \
            AND p.brand = q.pkey AND q.brand < 3 GROUP BY i.key ORDER BY i.key",
        )
        .await
        .has_rows();
    }

    #[tokio::test]
    async fn a_filtered_table_passes_a_bigger_filtered_one_to_the_unfiltered_table_it_meets() {
        // q07's supplier side: the nations (parts, 60 rows) meet supplier (i), which is
        // joined with the filtered lineitem (j, 400 rows): the nations go onto supplier.
        parts_go_first(&Q07_SHAPE.replace("p.brand = 1", "p.brand = 1 AND j.qty < 20")).await;
    }

    #[tokio::test]
    async fn a_filtered_table_stays_above_a_smaller_filtered_one() {
        // The other way round: the filtered items (400 rows) meet parts p, which is joined
        // with the filtered parts q (60 rows): which filters more is not known, and the
        // smaller goes first.
        let q = compare(
            "SELECT p.pkey, count(*) AS n FROM parts p, parts q, items i \
            WHERE p.pkey = q.pkey AND q.brand < 3 AND i.key = p.pkey AND i.qty < 20 \
            GROUP BY p.pkey ORDER BY p.pkey",
        )
        .await;
        q.has_rows();
        assert!(
            joined_before(&q.ruled_plan, "p.pkey = q.pkey", "= i.key"),
            "q is joined first, as without the rule: {}",
            q.ruled_plan
        );
    }

    #[tokio::test]
    async fn a_join_whose_condition_reads_both_tables_below_stays() {
        let sql = Q07_SHAPE.replace("p.pkey = i.key", "p.pkey = i.key + j.qty - j.qty");
        let q = compare(&sql).await;
        let (parts, items) = lines(&q.ruled_plan);
        assert!(parts < items, "{}", q.ruled_plan);
    }
}
