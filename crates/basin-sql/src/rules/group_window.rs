//! A logical optimizer rule DataFusion does not have: an aggregate of a table by a key,
//! joined back on that key to a query that reads the same rows, becomes a window over the
//! join's rows.
//!
//! TPC-H q17 compares each line with the average quantity of its part:
//! `l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem WHERE l_partkey = p_partkey)`.
//! DataFusion decorrelates it into an aggregate of lineitem by `l_partkey`, inner-joined with
//! the outer query, so lineitem (6 M rows) is read twice:
//!
//! ```text
//! Inner Join: p_partkey = sq.l_partkey  Filter: l_quantity < sq.avg
//!   lineitem ⋈ Filter(part)                                  -- 6,000 rows
//!   sq: Projection 0.2 * avg: Aggregate groupBy=[l_partkey] over lineitem
//! ```
//!
//! The join's rows already hold every line of each part they keep, so the average is a window
//! over them, and lineitem is read once:
//!
//! ```text
//! Filter: l_quantity < sq.avg
//!   Projection: (the join's columns; sq's computed from the window)
//!     Window: avg(l_quantity) PARTITION BY p_partkey
//!       Filter: p_partkey IS NOT NULL
//!         lineitem ⋈ Filter(part)
//! ```
//!
//! q02 is the same with a join under the aggregate: the cheapest supply cost of a part among
//! the suppliers of one region, `min(ps_supplycost)` over partsupp ⋈ supplier ⋈ nation ⋈
//! region, where the outer query joins those same four (and part) under the same conditions.
//!
//! Why the answer cannot change. Read as relations and conditions (`join_graph.rs`), the
//! aggregate's input is `I = σ[C](T1 × .. × Tn)` over whole tables, and the outer side is
//! `A = σ[C ∪ Q](T1 × .. × Tn × X)`: the same tables, each once, under the same conditions,
//! joined with other relations `X` by conditions `Q` that read no column of the `Ti` but the
//! group key `k`. So every row of `I` with key `x` is in `A` the same number of times `m(x)`
//! (how many rows of `X` the key `x` meets), and `A`'s rows of key `x` hold, each `m(x)`
//! times, all of `I`'s rows of key `x`. An average, a minimum and a maximum over those rows
//! equal the aggregate's over `I`'s; a sum or a count would be `m(x)` times larger, so only
//! those three are taken. The tables are named alike, hence read at the same snapshot. The
//! join keeps exactly the rows of `A` whose key has a group: every row whose key is not null
//! (a null matches nothing). So the window is over `A`'s rows with a key, partitioned by the
//! outer key (the group key, or equal to it in every row of `A` by a condition of `Q`), and
//! the join's other conditions are kept above it.
//!
//! When it pays: the window sorts `A`'s rows by the key, where the aggregate hashes `I`'s. So
//! the rule applies only when `A` is a selective cut of `I` (`Q` holds, or the relations of
//! `X` hold, an equality, an `IN` list or a prefix `LIKE`), as q17's 6,000 of 6 M lines.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, TableReference};
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, Join, LogicalPlan, LogicalPlanBuilder, WindowFunctionDefinition,
};
use datafusion::optimizer::push_down_filter::replace_cols_by_name;
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::join_graph::{JoinGraph, Relation, normalized, requalified};
use super::joins;

/// The prefix of the window columns' names.
const WINDOW_PREFIX: &str = "__basin_group_window";

#[derive(Debug, Default)]
pub(crate) struct GroupAggregateAsWindow;

impl OptimizerRule for GroupAggregateAsWindow {
    fn name(&self) -> &str {
        "basin_group_aggregate_as_window"
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
        // Each equi-join pair of columns may be the key; the other pairs stay conditions.
        for (index, pair) in join.on.iter().enumerate() {
            let (Expr::Column(left_key), Expr::Column(right_key)) = pair else {
                continue;
            };
            for (grouped_is_left, outer_key, grouped_key) in
                [(true, right_key, left_key), (false, left_key, right_key)]
            {
                if let Some(rewritten) =
                    as_window(join, index, grouped_is_left, outer_key, grouped_key)
                {
                    return Ok(Transformed::yes(rewritten));
                }
            }
        }
        Ok(Transformed::no(plan))
    }
}

/// `join` rewritten as a window over its outer side, if its other side is an aggregate that
/// `on[key_pair]` joins by its group key, of rows the outer side reads.
fn as_window(
    join: &Join,
    key_pair: usize,
    grouped_is_left: bool,
    outer_key: &Column,
    grouped_key: &Column,
) -> Option<LogicalPlan> {
    let (outer, grouped) = if grouped_is_left {
        (&join.right, &join.left)
    } else {
        (&join.left, &join.right)
    };
    let group = Grouped::find(grouped, grouped_key, outer_key)?;
    let reads = Reads::of(outer, &group.input, &group.key, outer_key)?;
    // The aggregates, over the outer side's columns, partitioned by the outer key.
    let mut windows = Vec::with_capacity(group.aggregates.len());
    for (i, aggregate) in group.aggregates.iter().enumerate() {
        let mut args = Vec::with_capacity(aggregate.params.args.len());
        for arg in &aggregate.params.args {
            let arg = reads.outer_expr(arg);
            let known = arg
                .column_refs()
                .iter()
                .all(|c| outer.schema().has_column(c));
            args.push(known.then_some(arg)?);
        }
        let mut window = WindowFunction::new(
            WindowFunctionDefinition::AggregateUDF(aggregate.func.clone()),
            args,
        );
        window.params.partition_by = vec![Expr::Column(outer_key.clone())];
        windows.push(Expr::WindowFunction(Box::new(window)).alias(format!("{WINDOW_PREFIX}_{i}")));
    }
    // The grouped side's columns, computed from the key and the windows.
    let grouped_exprs = group.outputs.into_iter().zip(grouped.schema().iter()).map(
        |(output, (qualifier, field))| output.alias_qualified(qualifier.cloned(), field.name()),
    );
    let outer_exprs = outer.schema().columns().into_iter().map(Expr::Column);
    let exprs: Vec<Expr> = if grouped_is_left {
        grouped_exprs.into_iter().chain(outer_exprs).collect()
    } else {
        outer_exprs.chain(grouped_exprs).collect()
    };
    // The join's other conditions, above the window.
    let others = join.on.iter().enumerate().filter(|(i, _)| *i != key_pair);
    let conditions = others
        .map(|(_, (l, r))| l.clone().eq(r.clone()))
        .chain(join.filter.clone());
    let built = || {
        let mut builder = LogicalPlanBuilder::from(outer.as_ref().clone())
            .filter(Expr::Column(outer_key.clone()).is_not_null())?
            .window(windows)?
            .project(exprs)?;
        if let Some(condition) = conjunction(conditions) {
            builder = builder.filter(condition)?;
        }
        builder.build()
    };
    // A plan DataFusion cannot build, or whose columns differ from the join's (a key of
    // another type on the outer side), leaves the join as it was.
    built().ok().filter(|p| {
        p.schema()
            .logically_equivalent_names_and_types(&join.schema)
    })
}

/// An aggregate by one column, under projections and aliases.
struct Grouped {
    /// The aggregate's input.
    input: Arc<LogicalPlan>,
    /// The grouping column, as the input names it.
    key: Column,
    /// The aggregates (each an average, a minimum or a maximum).
    aggregates: Vec<AggregateFunction>,
    /// Each output column of the grouped plan, as an expression of the outer key (for the
    /// group column) and the windows' columns (`{WINDOW_PREFIX}_{i}` for the `i`th aggregate).
    outputs: Vec<Expr>,
}

impl Grouped {
    /// `plan`, if it is such an aggregate and `key` (one of its outputs) is its group column,
    /// with the group column read as `outer_key`.
    fn find(plan: &LogicalPlan, key: &Column, outer_key: &Column) -> Option<Self> {
        let found = Self::below(plan, outer_key)?;
        let index = plan.schema().index_of_column(key).ok()?;
        let grouped_by = matches!(&found.outputs[index], Expr::Column(c) if c == outer_key);
        grouped_by.then_some(found)
    }

    fn below(plan: &LogicalPlan, outer_key: &Column) -> Option<Self> {
        match plan {
            LogicalPlan::SubqueryAlias(alias) => Self::below(&alias.input, outer_key),
            LogicalPlan::Projection(projection) => {
                let mut found = Self::below(&projection.input, outer_key)?;
                let inputs: HashMap<String, Expr> = projection
                    .input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(|c| c.flat_name())
                    .zip(found.outputs)
                    .collect();
                let mut outputs = Vec::with_capacity(projection.expr.len());
                for expr in &projection.expr {
                    let expr = expr.clone().unalias_nested().data;
                    outputs.push(replace_cols_by_name(expr, &inputs).ok()?);
                }
                found.outputs = outputs;
                Some(found)
            }
            LogicalPlan::Aggregate(aggregate) => {
                let [Expr::Column(key)] = aggregate.group_expr.as_slice() else {
                    return None;
                };
                let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len());
                let mut outputs = vec![Expr::Column(outer_key.clone())];
                for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
                    aggregates.push(joins::plain_aggregate(expr, &["avg", "min", "max"])?);
                    outputs.push(Expr::Column(Column::from_name(format!(
                        "{WINDOW_PREFIX}_{i}"
                    ))));
                }
                Some(Self {
                    input: aggregate.input.clone(),
                    key: key.clone(),
                    aggregates,
                    outputs,
                })
            }
            _ => None,
        }
    }
}

/// How the outer side reads the aggregate's rows: the qualifier each of the aggregate's tables
/// has on the outer side (see the module's doc for what must hold).
struct Reads {
    renames: HashMap<TableReference, TableReference>,
}

impl Reads {
    fn of(
        outer: &LogicalPlan,
        input: &LogicalPlan,
        key: &Column,
        outer_key: &Column,
    ) -> Option<Self> {
        let inner = JoinGraph::of(input);
        let graph = JoinGraph::of(outer);
        // Each of the aggregate's tables, scanned once on the outer side.
        let mut renames = HashMap::new();
        for relation in &inner.relations {
            let Relation::Scan { table, qualifier } = relation else {
                return None;
            };
            let outer_qualifier = graph.only_scan_of(table)?;
            renames.insert(qualifier.clone(), outer_qualifier.clone());
        }
        let tables: HashSet<TableReference> = renames.values().cloned().collect();
        if tables.len() != inner.relations.len() {
            return None;
        }
        let reads = Self { renames };
        // The aggregate's conditions, all among the outer side's.
        let conditions: Vec<Expr> = inner
            .conditions
            .iter()
            .map(|c| normalized(reads.outer_expr(c)))
            .collect();
        if !conditions.iter().all(|c| graph.conditions.contains(c)) {
            return None;
        }
        // The others read no column of those tables but the key.
        let Expr::Column(key) = reads.outer_expr(&Expr::Column(key.clone())) else {
            return None;
        };
        let extra: Vec<&Expr> = graph
            .conditions
            .iter()
            .filter(|c| !conditions.contains(c))
            .collect();
        let only_key = |e: &Expr| {
            e.column_refs()
                .into_iter()
                .all(|c| *c == key || c.relation.as_ref().is_none_or(|r| !tables.contains(r)))
        };
        if !extra.iter().all(|c| only_key(c)) {
            return None;
        }
        // The outer key equals the group key in every row.
        let equal = normalized(Expr::Column(outer_key.clone()).eq(Expr::Column(key.clone())));
        if *outer_key != key && !graph.conditions.contains(&equal) {
            return None;
        }
        // Something cuts the rows (else the aggregate is the cheaper).
        let cut = extra.iter().any(|c| joins::selective(c))
            || graph.relations.iter().any(|r| match r {
                Relation::Other(plan) => has_selective_filter(plan),
                Relation::Scan { .. } => false,
            });
        cut.then_some(reads)
    }

    /// `expr`, over the aggregate's input, as the outer side names its columns.
    fn outer_expr(&self, expr: &Expr) -> Expr {
        requalified(expr, |r| self.renames.get(r))
    }
}

/// Whether a filter or a scan in `plan` holds a selective condition.
fn has_selective_filter(plan: &LogicalPlan) -> bool {
    plan.exists(|p| {
        Ok(match p {
            LogicalPlan::Filter(f) => joins::selective(&f.predicate),
            LogicalPlan::TableScan(s) => s.filters.iter().any(joins::selective),
            _ => false,
        })
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::super::tests::compare;

    /// q17's shape, grouped so that the answer has rows: each key's items under half its
    /// average quantity, for the parts of one brand.
    const Q17_SHAPE: &str = "SELECT i.key, sum(i.qty) AS s, count(*) AS n FROM items i, parts p \
        WHERE p.pkey = i.key AND p.brand = 1 \
        AND i.qty < (SELECT 0.5 * avg(qty) FROM items WHERE key = p.pkey) \
        GROUP BY i.key ORDER BY i.key";

    #[tokio::test]
    async fn a_correlated_average_is_a_window_over_the_join_and_answers_the_same() {
        let q = compare(Q17_SHAPE).await;
        q.has_rows();
        assert!(q.windowed());
    }

    #[tokio::test]
    async fn q17_as_written_without_aliases_reads_the_table_once() {
        let q = compare(
            "SELECT key, sum(qty) AS s FROM items, parts WHERE pkey = key AND brand = 3 \
            AND qty > (SELECT 0.5 * avg(qty) FROM items WHERE key = pkey) GROUP BY key ORDER BY key",
        )
        .await;
        q.has_rows();
        assert!(q.windowed());
    }

    #[tokio::test]
    async fn minimum_and_maximum_are_windows_too() {
        let q =
            compare(&Q17_SHAPE.replace("0.5 * avg(qty)", "min(qty) + 0.5 * (max(qty) - min(qty))"))
                .await;
        q.has_rows();
        assert!(q.windowed());
    }

    /// q17's shape over a derived table that holds each key three times (`pkey % 20` over
    /// pkeys 1, 5, 9, ..).
    const MANY_TIMES: &str = "SELECT i.key, sum(i.qty) AS s, count(*) AS n FROM items i, \
        (SELECT pkey % 20 AS pk FROM parts WHERE brand = 1) p \
        WHERE p.pk = i.key AND i.qty < (SELECT 0.5 * avg(qty) FROM items WHERE key = p.pk) \
        GROUP BY i.key ORDER BY i.key";

    #[tokio::test]
    async fn keys_met_many_times_count_their_rows_as_often() {
        let q = compare(MANY_TIMES).await;
        q.has_rows();
        assert!(q.windowed());
    }

    #[tokio::test]
    async fn rows_without_a_key_are_dropped_as_the_join_drops_them() {
        // Correlated on the outer table's own key, beside one part (a join reading no column
        // of items): items with a null key meet no group, and no window either.
        let q = compare(
            "SELECT i.key, sum(i.qty) AS s, count(*) AS n FROM items i, parts p \
            WHERE p.pkey = 1 AND i.qty < (SELECT 0.5 * avg(qty) FROM items WHERE key = i.key) \
            GROUP BY i.key ORDER BY i.key NULLS FIRST",
        )
        .await;
        q.has_rows();
        assert!(q.windowed());
        assert!(!q.answer.contains("|     |"), "{}", q.answer);
    }

    /// q02's shape: the least quantity of a key's items among those a zone's sellers hold,
    /// the outer query joining the same two tables under the same conditions.
    const Q02_SHAPE: &str = "SELECT p.pkey, i.qty, s.skey FROM parts p, items i, sellers s \
        WHERE p.pkey = i.key AND i.qty = s.skey AND s.zone = 1 AND p.brand = 1 \
        AND i.qty = (SELECT min(qty) FROM items, sellers \
            WHERE key = p.pkey AND qty = skey AND zone = 1) \
        ORDER BY 1, 2";

    #[tokio::test]
    async fn an_aggregate_over_a_join_the_outer_query_repeats_is_a_window_too() {
        let q = compare(Q02_SHAPE).await;
        q.has_rows();
        assert!(q.windowed());
        assert_eq!(q.ruled_plan.matches("TableScan: sellers").count(), 1);
    }

    #[tokio::test]
    async fn an_aggregate_over_other_conditions_stays() {
        // The outer query's sellers are of two zones, the subquery's of one.
        let q = compare(&Q02_SHAPE.replace("s.zone = 1", "s.zone >= 1")).await;
        q.has_rows();
        assert!(!q.windowed());
        // The subquery joins a table the outer query does not.
        let q = compare(&Q02_SHAPE.replace(
            "AND zone = 1)",
            "AND zone = 1 AND EXISTS (SELECT 1 FROM parts b WHERE b.pkey = skey AND b.brand = 2))",
        ))
        .await;
        assert!(!q.ruled_plan.contains("WindowAggr"), "{}", q.ruled_plan);
    }

    #[tokio::test]
    async fn a_sum_or_a_count_stays_an_aggregate() {
        // Over rows met three times, a window's sum or count would be three times the
        // aggregate's: `compare` would see other answers.
        for aggregate in ["0.1 * sum(qty)", "3 * count(qty)"] {
            let q = compare(&MANY_TIMES.replace("0.5 * avg(qty)", aggregate)).await;
            q.has_rows();
            assert!(!q.windowed(), "{aggregate}");
        }
    }

    #[tokio::test]
    async fn rows_of_the_table_the_outer_query_drops_keep_the_aggregate() {
        // The outer query drops items by quantity: its rows of a key are not all the key's.
        let q = compare(&Q17_SHAPE.replace("p.brand = 1", "p.brand = 1 AND i.qty >= 3")).await;
        q.has_rows();
        assert!(!q.windowed());
        // The subquery drops items of its own: its average is not over the outer rows.
        let q = compare(&Q17_SHAPE.replace("WHERE key = p.pkey", "WHERE key = p.pkey AND qty > 5"))
            .await;
        q.has_rows();
        assert!(!q.ruled_plan.contains("WindowAggr"), "{}", q.ruled_plan);
    }

    #[tokio::test]
    async fn without_a_selective_cut_the_aggregate_stays() {
        let q = compare(&Q17_SHAPE.replace("p.brand = 1", "p.brand > 1")).await;
        q.has_rows();
        assert!(!q.windowed());
    }
}
