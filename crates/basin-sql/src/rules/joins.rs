//! What the rules ask of the joins, projections and filters they rewrite: a join rebuilt over
//! new inputs, the columns its condition reads, whether a projection passes a column through,
//! whether a filter is selective, whether an aggregate reads all its input's rows alike.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::{Column, NullEquality, Result, ScalarValue};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Join, JoinType, LogicalPlan, Operator, Projection,
};

/// Whether `join` is an inner join whose keys match no nulls (SQL's `=`).
pub(super) fn is_inner(join: &Join) -> bool {
    join.join_type == JoinType::Inner && join.null_equality == NullEquality::NullEqualsNothing
}

/// `join` over other inputs with the same columns, as a plan.
pub(super) fn rejoin(
    join: &Join,
    left: Arc<LogicalPlan>,
    right: Arc<LogicalPlan>,
) -> Result<LogicalPlan> {
    Ok(LogicalPlan::Join(Join::try_new(
        left,
        right,
        join.on.clone(),
        join.filter.clone(),
        join.join_type,
        join.join_constraint,
        join.null_equality,
        join.null_aware,
    )?))
}

/// The columns of one input of `join` (the left one if `left`) that its condition reads: its
/// keys on that side, and its filter's columns from that input.
pub(super) fn columns_read(join: &Join, left: bool) -> HashSet<Column> {
    let input = if left { &join.left } else { &join.right };
    let mut used = HashSet::new();
    for (left_key, right_key) in &join.on {
        let key = if left { left_key } else { right_key };
        used.extend(key.column_refs().into_iter().cloned());
    }
    if let Some(filter) = &join.filter {
        let refs = filter.column_refs().into_iter();
        used.extend(refs.filter(|c| input.schema().has_column(c)).cloned());
    }
    used
}

/// Whether `projection` passes `column` through unchanged (same name, not computed).
pub(super) fn passes_through(projection: &Projection, column: &Column) -> bool {
    projection
        .schema
        .index_of_column(column)
        .ok()
        .and_then(|i| projection.expr.get(i))
        .is_some_and(|e| matches!(e, Expr::Column(inner) if inner == column))
}

/// A filter with a conjunct `column = constant`, `column IN (constants)` or `column LIKE
/// 'prefix%'` (a pattern that starts with its literal part).
pub(super) fn selective(predicate: &Expr) -> bool {
    fn constant(e: &Expr) -> bool {
        match e {
            Expr::Literal(..) => true,
            Expr::Cast(c) => constant(&c.expr),
            Expr::TryCast(c) => constant(&c.expr),
            _ => false,
        }
    }
    fn column(e: &Expr) -> bool {
        match e {
            Expr::Column(_) => true,
            Expr::Cast(c) => column(&c.expr),
            Expr::TryCast(c) => column(&c.expr),
            _ => false,
        }
    }
    split_conjunction(predicate).into_iter().any(|e| match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => (column(left) && constant(right)) || (constant(left) && column(right)),
        Expr::InList(list) => !list.negated && column(&list.expr) && list.list.iter().all(constant),
        Expr::Like(like) => {
            !like.negated
                && column(&like.expr)
                && matches!(like.pattern.as_ref(),
                    Expr::Literal(ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p))
                        | ScalarValue::LargeUtf8(Some(p)), _)
                    if p.chars().next().is_some_and(|c| c != '%' && c != '_'))
        }
        _ => false,
    })
}

/// `expr` (aliased or not) as a call of one of `names` over all its input's rows alike: no
/// `DISTINCT`, `FILTER` or order of its own, as a window over the same rows computes it.
pub(super) fn plain_aggregate(expr: &Expr, names: &[&str]) -> Option<AggregateFunction> {
    let Expr::AggregateFunction(f) = expr.clone().unalias_nested().data else {
        return None;
    };
    let params = &f.params;
    let plain = names.contains(&f.func.name())
        && !params.distinct
        && params.filter.is_none()
        && params.order_by.is_empty();
    plain.then_some(f)
}
