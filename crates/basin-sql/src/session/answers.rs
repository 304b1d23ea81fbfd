//! Which of a session's answers the result cache may keep ([`crate::result_cache`]): those
//! whose plans give the same answer every time on the same commit.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};

use crate::changes::ChangesTable;
use crate::mapped::MappedScan;

/// Whether `plan`'s answer is the same every time it runs on the same commit (see
/// `result_cache`'s documentation); views are looked into.
pub(super) fn same_every_time(plan: &LogicalPlan) -> bool {
    if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
        return false;
    }
    let mut same = true;
    let walked = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            same &= match datafusion::datasource::source_as_provider(&scan.source) {
                Ok(provider) => {
                    let any = provider.as_any();
                    !any.is::<MappedScan>()
                        && !any.is::<ChangesTable>()
                        && provider
                            .get_logical_plan()
                            .is_none_or(|view| same_every_time(&view))
                }
                Err(_) => false,
            };
        }
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                same &= immutable(e);
                Ok(if same {
                    TreeNodeRecursion::Continue
                } else {
                    TreeNodeRecursion::Stop
                })
            })
        })?;
        Ok(if same {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    walked.is_ok() && same
}

/// Whether `expr` itself (not its arguments) gives the same value for the same input.
fn immutable(expr: &Expr) -> bool {
    let volatility = match expr {
        Expr::ScalarFunction(f) => f.func.signature().volatility,
        Expr::AggregateFunction(f) => f.func.signature().volatility,
        Expr::WindowFunction(f) => match &f.fun {
            datafusion::logical_expr::WindowFunctionDefinition::AggregateUDF(u) => {
                u.signature().volatility
            }
            datafusion::logical_expr::WindowFunctionDefinition::WindowUDF(u) => {
                u.signature().volatility
            }
        },
        // A placeholder's value comes with each run.
        Expr::Placeholder(_) => Volatility::Volatile,
        _ => Volatility::Immutable,
    };
    volatility == Volatility::Immutable
}
