//! A logical optimizer rule DataFusion does not have: an aggregate of a table by a key,
//! joined back to that same table on the key, becomes a window over the join's rows.
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
//!       lineitem ⋈ Filter(part)
//! ```
//!
//! Why the answer cannot change. The outer side `A` reaches the table `T` through inner joins,
//! filters, projections and aliases that read none of `T`'s columns but its key `k`. So every
//! row of `T` with key `x` is in `A` the same number of times `m(x)` (how many combinations of
//! other rows the key `x` matches), and `A`'s rows of key `x` hold, each `m(x)` times, all of
//! `T`'s rows of key `x`. An average, a minimum and a maximum over those rows equal the
//! aggregate's over `T`'s rows of key `x`; a sum or a count would be `m(x)` times larger, so
//! only those three are taken. The aggregate reads `T` whole (no filter), with the same name,
//! hence the same snapshot. The join keeps exactly the rows of `A` whose key has a group:
//! every row whose key is not null (its key comes from `T`; a null matches nothing). So the
//! window is over `A`'s rows with a key, and the join's filter is kept above it.
//!
//! When it pays: the window sorts `A`'s rows by the key, where the aggregate hashes `T`'s. So
//! the rule applies only when `A` is a selective cut of `T` (a join with a table under an
//! equality, an `IN` list or a prefix `LIKE`), as q17's 6,000 of 6 M lines.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, NullEquality, Result, TableReference};
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Join, JoinType, LogicalPlan, LogicalPlanBuilder, Operator, TableScan,
    WindowFunctionDefinition,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

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
        if join.join_type != JoinType::Inner
            || join.null_equality != NullEquality::NullEqualsNothing
            || join.on.len() != 1
        {
            return Ok(Transformed::no(plan));
        }
        let (Expr::Column(left_key), Expr::Column(right_key)) = (&join.on[0].0, &join.on[0].1)
        else {
            return Ok(Transformed::no(plan));
        };
        for (outer, outer_key, grouped, grouped_key, grouped_is_left) in [
            (&join.right, right_key, &join.left, left_key, true),
            (&join.left, left_key, &join.right, right_key, false),
        ] {
            if let Some(rewritten) = as_window(
                join,
                outer,
                outer_key,
                grouped,
                grouped_key,
                grouped_is_left,
            )? {
                return Ok(Transformed::yes(rewritten));
            }
        }
        Ok(Transformed::no(plan))
    }
}

/// `join` rewritten as a window over `outer`, if `grouped` is an aggregate of the table
/// `outer` reaches by its key.
fn as_window(
    join: &Join,
    outer: &Arc<LogicalPlan>,
    outer_key: &Column,
    grouped: &Arc<LogicalPlan>,
    grouped_key: &Column,
    grouped_is_left: bool,
) -> Result<Option<LogicalPlan>> {
    let Some(group) = Grouped::find(grouped, grouped_key) else {
        return Ok(None);
    };
    let Some(reach) = Reach::find(outer, outer_key, &group.table) else {
        return Ok(None);
    };
    if reach.key != group.key || !reach.cut {
        return Ok(None);
    }
    // The aggregates' arguments, on the outer side's columns of the table.
    let mut windows = Vec::with_capacity(group.aggregates.len());
    for (i, aggregate) in group.aggregates.iter().enumerate() {
        let mut args = Vec::with_capacity(aggregate.params.args.len());
        for arg in &aggregate.params.args {
            let Some(arg) = on_outer_columns(arg, &group.columns, &reach.columns)? else {
                return Ok(None);
            };
            args.push(arg);
        }
        let mut window = WindowFunction::new(
            WindowFunctionDefinition::AggregateUDF(aggregate.func.clone()),
            args,
        );
        window.params.partition_by = vec![Expr::Column(outer_key.clone())];
        windows.push(Expr::WindowFunction(Box::new(window)).alias(format!("{WINDOW_PREFIX}_{i}")));
    }
    // The grouped side's columns, computed from the key and the windows.
    let mut grouped_exprs = Vec::with_capacity(group.outputs.len());
    for (output, (qualifier, field)) in group.outputs.iter().zip(grouped.schema().iter()) {
        let expr = output.clone().transform(|e| {
            Ok(match e {
                Expr::Column(c) if c.relation.is_none() && c.name == GROUP_KEY => {
                    Transformed::yes(Expr::Column(outer_key.clone()))
                }
                e => Transformed::no(e),
            })
        })?;
        grouped_exprs.push(expr.data.alias_qualified(qualifier.cloned(), field.name()));
    }
    let outer_exprs = outer.schema().columns().into_iter().map(Expr::Column);
    let exprs: Vec<Expr> = if grouped_is_left {
        grouped_exprs.into_iter().chain(outer_exprs).collect()
    } else {
        outer_exprs.chain(grouped_exprs).collect()
    };
    let built = || {
        let mut builder = LogicalPlanBuilder::from(outer.as_ref().clone())
            .filter(Expr::Column(outer_key.clone()).is_not_null())?
            .window(windows)?
            .project(exprs)?;
        if let Some(filter) = &join.filter {
            builder = builder.filter(filter.clone())?;
        }
        builder.build()
    };
    // A plan DataFusion cannot build, or whose columns differ from the join's (a key of
    // another type on the outer side), leaves the join as it was.
    Ok(built().ok().filter(|p| {
        p.schema()
            .logically_equivalent_names_and_types(&join.schema)
    }))
}

/// The name the group key takes in [`Grouped::outputs`] before it is replaced by the outer key.
const GROUP_KEY: &str = "__basin_group_key";

/// An aggregate of one whole table by one of its columns, under projections and aliases.
struct Grouped {
    table: TableReference,
    /// The grouping column's name in the table.
    key: String,
    /// The aggregates (each an average, a minimum or a maximum).
    aggregates: Vec<AggregateFunction>,
    /// The table's columns as the aggregate's input names them, by their names in the table.
    columns: HashMap<Column, String>,
    /// Each output column of the grouped plan, as an expression of [`GROUP_KEY`] and the
    /// windows' columns (`{WINDOW_PREFIX}_{i}` for the `i`th aggregate).
    outputs: Vec<Expr>,
}

impl Grouped {
    /// `plan`, if it is such an aggregate and `key` (one of its outputs) is its group column.
    fn find(plan: &LogicalPlan, key: &Column) -> Option<Self> {
        let found = Self::below(plan)?;
        let index = plan.schema().index_of_column(key).ok()?;
        let Expr::Column(c) = &found.outputs[index] else {
            return None;
        };
        (c.relation.is_none() && c.name == GROUP_KEY).then_some(found)
    }

    fn below(plan: &LogicalPlan) -> Option<Self> {
        match plan {
            LogicalPlan::SubqueryAlias(alias) => Self::below(&alias.input),
            LogicalPlan::Projection(projection) => {
                let mut found = Self::below(&projection.input)?;
                let inputs: HashMap<Column, Expr> = projection
                    .input
                    .schema()
                    .columns()
                    .into_iter()
                    .zip(found.outputs)
                    .collect();
                let mut outputs = Vec::with_capacity(projection.expr.len());
                for expr in &projection.expr {
                    let expr = expr.clone().unalias_nested().data;
                    let replaced = expr.transform(|e| match e {
                        Expr::Column(c) => match inputs.get(&c) {
                            Some(e) => Ok(Transformed::yes(e.clone())),
                            None => datafusion::common::plan_err!("no column {c}"),
                        },
                        e => Ok(Transformed::no(e)),
                    });
                    outputs.push(replaced.ok()?.data);
                }
                found.outputs = outputs;
                Some(found)
            }
            LogicalPlan::Aggregate(aggregate) => {
                let [Expr::Column(group)] = aggregate.group_expr.as_slice() else {
                    return None;
                };
                let (table, columns) = whole_table(&aggregate.input)?;
                let key = columns.get(group)?.clone();
                let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len());
                let mut outputs = vec![Expr::Column(Column::from_name(GROUP_KEY))];
                for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
                    let Expr::AggregateFunction(f) = expr.clone().unalias_nested().data else {
                        return None;
                    };
                    let params = &f.params;
                    let kept = matches!(f.func.name(), "avg" | "min" | "max")
                        && !params.distinct
                        && params.filter.is_none()
                        && params.order_by.is_empty();
                    kept.then_some(())?;
                    aggregates.push(f);
                    outputs.push(Expr::Column(Column::from_name(format!(
                        "{WINDOW_PREFIX}_{i}"
                    ))));
                }
                Some(Self {
                    table,
                    key,
                    aggregates,
                    columns,
                    outputs,
                })
            }
            _ => None,
        }
    }
}

/// The table `plan` scans whole (under an alias at most), and its columns as `plan` names
/// them, by their names in the table.
fn whole_table(plan: &LogicalPlan) -> Option<(TableReference, HashMap<Column, String>)> {
    match plan {
        LogicalPlan::TableScan(scan) if scan.filters.is_empty() && scan.fetch.is_none() => {
            Some((scan.table_name.clone(), scan_columns(scan)))
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let (table, below) = whole_table(&alias.input)?;
            Some((table, renamed(&alias.input, plan, &below)))
        }
        _ => None,
    }
}

fn scan_columns(scan: &TableScan) -> HashMap<Column, String> {
    scan.projected_schema
        .columns()
        .into_iter()
        .map(|c| {
            let name = c.name.clone();
            (c, name)
        })
        .collect()
}

/// `columns` (of `input`) as `plan`, which passes `input`'s columns through in their order (an
/// alias), names them.
fn renamed(
    input: &LogicalPlan,
    plan: &LogicalPlan,
    columns: &HashMap<Column, String>,
) -> HashMap<Column, String> {
    input
        .schema()
        .columns()
        .into_iter()
        .zip(plan.schema().columns())
        .filter_map(|(below, above)| columns.get(&below).map(|name| (above, name.clone())))
        .collect()
}

/// How the outer side reaches the table: the key's name in it, the table's columns as the
/// outer side names them, and whether a selective filter cuts the rows on the way.
struct Reach {
    key: String,
    columns: HashMap<Column, String>,
    cut: bool,
}

impl Reach {
    /// Follows `key` (an output column of `plan`) down to a column of `table`, through nodes
    /// that read no other column of that table (see the module's doc).
    fn find(plan: &LogicalPlan, key: &Column, table: &TableReference) -> Option<Self> {
        let found = match plan {
            LogicalPlan::TableScan(scan) if scan.table_name == *table => {
                let columns = scan_columns(scan);
                let name = columns.get(key)?.clone();
                let key_only = scan.filters.iter().all(|f| {
                    f.column_refs()
                        .iter()
                        .all(|c| columns.get(c) == Some(&name))
                });
                (key_only && scan.fetch.is_none()).then_some(())?;
                return Some(Self {
                    key: name,
                    columns,
                    cut: false,
                });
            }
            LogicalPlan::SubqueryAlias(alias) => {
                let index = plan.schema().index_of_column(key).ok()?;
                let below = Column::from(alias.input.schema().qualified_field(index));
                let mut found = Self::find(&alias.input, &below, table)?;
                found.columns = renamed(&alias.input, plan, &found.columns);
                return Some(found);
            }
            LogicalPlan::Projection(projection) => {
                if !joins::passes_through(projection, key) {
                    return None;
                }
                let mut found = Self::find(&projection.input, key, table)?;
                for expr in &projection.expr {
                    if !matches!(expr, Expr::Column(_)) && !found.reads_only_key(expr) {
                        return None;
                    }
                }
                found
                    .columns
                    .retain(|c, _| joins::passes_through(projection, c));
                found
            }
            LogicalPlan::Filter(filter) => {
                let found = Self::find(&filter.input, key, table)?;
                found.reads_only_key(&filter.predicate).then_some(())?;
                found
            }
            LogicalPlan::Join(join) => Self::through_join(join, key, table)?,
            _ => return None,
        };
        Some(found)
    }

    fn through_join(join: &Join, key: &Column, table: &TableReference) -> Option<Self> {
        if join.join_type != JoinType::Inner
            || join.null_equality != NullEquality::NullEqualsNothing
        {
            return None;
        }
        let key_is_left = join.left.schema().has_column(key);
        let (own, other) = if key_is_left {
            (&join.left, &join.right)
        } else {
            (&join.right, &join.left)
        };
        // The key's own side; else the side it is joined to, on the key it equals there.
        let (mut found, beside) = match Self::find(own, key, table) {
            Some(found) => (found, other),
            None => {
                // Equalities in the join's filter count too: DataFusion moves them into its
                // keys only later in the pass that runs this rule first.
                let filter = join.filter.iter().flat_map(split_conjunction);
                let equal = filter.filter_map(|e| match e {
                    Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::Eq,
                        right,
                    }) => Some((left.as_ref(), right.as_ref())),
                    _ => None,
                });
                let pairs = join.on.iter().map(|(l, r)| (l, r)).chain(equal);
                let found = pairs.into_iter().find_map(|(l, r)| match (l, r) {
                    (Expr::Column(l), Expr::Column(r))
                        if l == key && other.schema().has_column(r) =>
                    {
                        Self::find(other, r, table)
                    }
                    (Expr::Column(l), Expr::Column(r))
                        if r == key && other.schema().has_column(l) =>
                    {
                        Self::find(other, l, table)
                    }
                    _ => None,
                })?;
                (found, own)
            }
        };
        let conditions = join.on.iter().flat_map(|(l, r)| [l, r]);
        if !conditions
            .chain(join.filter.as_ref())
            .all(|e| found.reads_only_key(e))
        {
            return None;
        }
        // Whether the rows beside the table are a selective cut.
        found.cut |= beside
            .exists(|p| {
                Ok(match p {
                    LogicalPlan::Filter(f) => joins::selective(&f.predicate),
                    LogicalPlan::TableScan(s) => s.filters.iter().any(joins::selective),
                    _ => false,
                })
            })
            .unwrap_or(false);
        Some(found)
    }

    /// Whether `expr` reads no column of the table but its key.
    fn reads_only_key(&self, expr: &Expr) -> bool {
        expr.column_refs()
            .iter()
            .all(|c| self.columns.get(c).is_none_or(|name| *name == self.key))
    }
}

/// `expr` (over the aggregate's input) over the outer side's columns of the same table.
fn on_outer_columns(
    expr: &Expr,
    inner: &HashMap<Column, String>,
    outer: &HashMap<Column, String>,
) -> Result<Option<Expr>> {
    let by_name: HashMap<&String, &Column> = outer.iter().map(|(c, n)| (n, c)).collect();
    let mut missing = false;
    let mapped = expr.clone().transform(|e| {
        Ok(match e {
            Expr::Column(c) => match inner.get(&c).and_then(|n| by_name.get(n)) {
                Some(outer) => Transformed::yes(Expr::Column((*outer).clone())),
                None => {
                    missing = true;
                    Transformed::no(Expr::Column(c))
                }
            },
            e => Transformed::no(e),
        })
    })?;
    Ok((!missing).then_some(mapped.data))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Compared, compare};

    /// q17's shape, grouped so that the answer has rows: each key's items under half its
    /// average quantity, for the parts of one brand.
    const Q17_SHAPE: &str = "SELECT i.key, sum(i.qty) AS s, count(*) AS n FROM items i, parts p \
        WHERE p.pkey = i.key AND p.brand = 1 \
        AND i.qty < (SELECT 0.5 * avg(qty) FROM items WHERE key = p.pkey) \
        GROUP BY i.key ORDER BY i.key";

    /// Whether the plan with the rules reads `items` once, through a window.
    fn windowed(q: &Compared) -> bool {
        let plan = &q.ruled_plan;
        let once = plan.matches("TableScan: items").count() == 1;
        assert_eq!(once, plan.contains("WindowAggr"), "{plan}");
        assert_eq!(
            q.plain_plan.matches("TableScan: items").count(),
            2,
            "{}",
            q.plain_plan
        );
        once
    }

    #[tokio::test]
    async fn a_correlated_average_is_a_window_over_the_join_and_answers_the_same() {
        let q = compare(Q17_SHAPE).await;
        q.has_rows();
        assert!(windowed(&q));
    }

    #[tokio::test]
    async fn q17_as_written_without_aliases_reads_the_table_once() {
        let q = compare(
            "SELECT key, sum(qty) AS s FROM items, parts WHERE pkey = key AND brand = 3 \
            AND qty > (SELECT 0.5 * avg(qty) FROM items WHERE key = pkey) GROUP BY key ORDER BY key",
        )
        .await;
        q.has_rows();
        assert!(windowed(&q));
    }

    #[tokio::test]
    async fn minimum_and_maximum_are_windows_too() {
        let q =
            compare(&Q17_SHAPE.replace("0.5 * avg(qty)", "min(qty) + 0.5 * (max(qty) - min(qty))"))
                .await;
        q.has_rows();
        assert!(windowed(&q));
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
        assert!(windowed(&q));
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
        assert!(windowed(&q));
        assert!(!q.answer.contains("|     |"), "{}", q.answer);
    }

    #[tokio::test]
    async fn a_sum_or_a_count_stays_an_aggregate() {
        // Over rows met three times, a window's sum or count would be three times the
        // aggregate's: `compare` would see other answers.
        for aggregate in ["0.1 * sum(qty)", "3 * count(qty)"] {
            let q = compare(&MANY_TIMES.replace("0.5 * avg(qty)", aggregate)).await;
            q.has_rows();
            assert!(!windowed(&q), "{aggregate}");
        }
    }

    #[tokio::test]
    async fn rows_of_the_table_the_outer_query_drops_keep_the_aggregate() {
        // The outer query drops items by quantity: its rows of a key are not all the key's.
        let q = compare(&Q17_SHAPE.replace("p.brand = 1", "p.brand = 1 AND i.qty >= 3")).await;
        q.has_rows();
        assert!(!windowed(&q));
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
        assert!(!windowed(&q));
    }
}
