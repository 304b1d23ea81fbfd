//! An inner-join tree read as what it means: the relations it joins and the conjunction of all
//! its conditions (join keys, join filters, filters, scans' filters). Two trees with the same
//! relations and the same conditions give the same rows, whatever order DataFusion joined
//! them in; `group_window.rs` compares a subquery's tree with the outer query's this way.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, TableReference};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};

use super::joins;

pub(super) struct JoinGraph<'a> {
    pub(super) relations: Vec<Relation<'a>>,
    /// Each conjunct once, equalities with their sides in one order (see [`normalized`]).
    pub(super) conditions: Vec<Expr>,
}

pub(super) enum Relation<'a> {
    /// A table's scan: the table, and the qualifier its columns carry here (its name, or an
    /// alias).
    Scan {
        table: TableReference,
        qualifier: TableReference,
    },
    /// A plan of another kind (an aggregate, an outer join, a projection that computes),
    /// taken as the rows it gives.
    Other(&'a LogicalPlan),
}

impl<'a> JoinGraph<'a> {
    pub(super) fn of(plan: &'a LogicalPlan) -> Self {
        let mut graph = Self {
            relations: Vec::new(),
            conditions: Vec::new(),
        };
        graph.add(plan);
        graph
    }

    fn add(&mut self, plan: &'a LogicalPlan) {
        match plan {
            LogicalPlan::Join(join) if joins::is_inner(join) => {
                self.add(&join.left);
                self.add(&join.right);
                for (left, right) in &join.on {
                    self.condition(left.clone().eq(right.clone()));
                }
                if let Some(filter) = &join.filter {
                    self.conditions_of(filter);
                }
            }
            LogicalPlan::Filter(filter) => {
                self.add(&filter.input);
                self.conditions_of(&filter.predicate);
            }
            // A projection of columns keeps every row: it only leaves columns out.
            LogicalPlan::Projection(projection)
                if projection.expr.iter().all(|e| matches!(e, Expr::Column(_))) =>
            {
                self.add(&projection.input)
            }
            LogicalPlan::TableScan(scan) if scan.fetch.is_none() => {
                self.relations.push(Relation::Scan {
                    table: scan.table_name.clone(),
                    qualifier: scan.table_name.clone(),
                });
                for filter in &scan.filters {
                    self.conditions_of(filter);
                }
            }
            // An alias of one table's rows (under filters and projections of columns) is a
            // scan of that table under the alias.
            LogicalPlan::SubqueryAlias(alias) => {
                let below = Self::of(&alias.input);
                let [Relation::Scan { table, qualifier }] = below.relations.as_slice() else {
                    return self.relations.push(Relation::Other(plan));
                };
                let to = &alias.alias;
                for condition in &below.conditions {
                    self.condition(requalified(condition, |r| (r == qualifier).then_some(to)));
                }
                self.relations.push(Relation::Scan {
                    table: table.clone(),
                    qualifier: to.clone(),
                });
            }
            _ => self.relations.push(Relation::Other(plan)),
        }
    }

    fn conditions_of(&mut self, predicate: &Expr) {
        for conjunct in split_conjunction(predicate) {
            self.condition(conjunct.clone());
        }
    }

    fn condition(&mut self, condition: Expr) {
        let condition = normalized(condition);
        if !self.conditions.contains(&condition) {
            self.conditions.push(condition);
        }
    }

    /// The qualifier of `table`'s one scan here; `None` if it is scanned more than once or not
    /// at all (outside the relations of other kinds).
    pub(super) fn only_scan_of(&self, table: &TableReference) -> Option<&TableReference> {
        let mut scans = self.relations.iter().filter_map(|r| match r {
            Relation::Scan {
                table: t,
                qualifier,
            } if t == table => Some(qualifier),
            _ => None,
        });
        let first = scans.next()?;
        scans.next().is_none().then_some(first)
    }
}

/// `condition` with an equality's sides in one order (the smaller display first), so that
/// `a = b` and `b = a` compare equal.
pub(super) fn normalized(condition: Expr) -> Expr {
    match condition {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) if left.to_string() > right.to_string() => Expr::BinaryExpr(BinaryExpr {
            left: right,
            op: Operator::Eq,
            right: left,
        }),
        other => other,
    }
}

/// `expr` with the columns of each relation `rename` answers for qualified by its answer.
pub(super) fn requalified<'a>(
    expr: &Expr,
    rename: impl Fn(&TableReference) -> Option<&'a TableReference>,
) -> Expr {
    let renamed = expr.clone().transform(|e| {
        Ok(match e {
            Expr::Column(c) => match c.relation.as_ref().and_then(&rename) {
                Some(to) => Transformed::yes(Expr::Column(Column {
                    relation: Some(to.clone()),
                    ..c
                })),
                None => Transformed::no(Expr::Column(c)),
            },
            e => Transformed::no(e),
        })
    });
    renamed.map_or_else(|_| expr.clone(), |t| t.data)
}
