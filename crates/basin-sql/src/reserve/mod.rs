//! Functions that can make far more than they are given ask the query's memory pool for
//! room first.
//!
//! DataFusion's operators that hold memory (sorts, aggregations, joins) reserve it in the
//! pool; a scalar function's output is reserved by nobody. So `generate_series(1, 1e9)`, a
//! `repeat('x', 1e9)`, `lpad`, `array_repeat`, a `concat` of one large column a hundred
//! times or a chain of `||`s each allocated gigabytes past `[sql] memory_limit` (seen: a
//! server limited to 256 MiB grew by 3 GiB), and so did a long constant repeated on every
//! row of a batch. Here, an analyzer rule ([`Reserve`], the last one) wraps each call of
//! such a function ([`AMPLIFIERS`], and `||` on strings) so that before it runs on a batch,
//! it estimates the bytes it is about to make from its arguments (an upper bound: a
//! repeat's lengths times its counts, a series' span over its step, the sum of what a
//! concatenation joins) plus the arguments it holds, and reserves them in the query's share
//! of the pool. Past the share, or past what all queries together may hold, the query fails
//! with the pool's error naming the function, before a byte is made. The reservation is let
//! go when the batch is made: from there the batch is the operators' to account, as every
//! batch is.
//!
//! Where a call's output becomes rows (a projection, an aggregation's arguments, a window),
//! the wrapped call is volatile, so that the optimizer does not compute it while it plans:
//! constant folding would make `repeat('x', 1e8)` once, and the projection would then copy
//! that constant to every row of every batch, reserved by nobody. It runs with the query,
//! batch by batch, and reserves each batch's copies. In a filter or a join's condition the
//! call keeps its own volatility, so that constants still fold there and filters still reach
//! the scan (partition and row group pruning): folding runs the wrapper on one row, which
//! reserves one row's output, and a call too large for that is left to run with the query.
//! A projection's output holding a long literal (over [`LONG_LITERAL`] bytes) is wrapped
//! too, since a constant is copied to every row of every batch.
//!
//! Functions whose output is no larger than their input (most) are left as they are.

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchemaRef, DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::expr::Alias;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, ExprSchemable, LogicalPlan, Operator,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

mod copied;
mod estimate;

use copied::Copied;
use estimate::estimate;

/// Functions whose output can be much larger than their arguments.
pub(crate) const AMPLIFIERS: &[&str] = &[
    "generate_series",
    "range",
    "repeat",
    "lpad",
    "rpad",
    "array_repeat",
    "array_resize",
    "concat",
    "concat_ws",
    "replace",
    "regexp_replace",
    "overlay",
    "translate",
    "to_hex",
    "encode",
    "array_concat",
    "array_cat",
    "array_append",
    "array_prepend",
    "make_array",
    "string_to_array",
    "array_to_string",
    // The Postgres door's `format(template, args...)`: each argument once, `%L` and `%I`
    // doubling its quotes.
    "format",
];

/// Literals longer than this, in a projection's output, reserve their copies on every row.
pub(crate) const LONG_LITERAL: usize = 4 << 10;

/// The analyzer rule that wraps amplifying calls (run after type coercion, before the
/// optimizer): a session's own, holding its memory pool.
#[derive(Debug)]
pub(crate) struct Reserve {
    pool: Arc<dyn MemoryPool>,
}

impl Reserve {
    pub(crate) fn new(pool: Arc<dyn MemoryPool>) -> Self {
        Self { pool }
    }

    /// Wraps the amplifying calls of `expr`, an expression of a node over `inputs`;
    /// `volatile` where its output becomes rows.
    fn wrap(
        &self,
        expr: Expr,
        inputs: &[DFSchemaRef],
        volatile: bool,
    ) -> Result<Transformed<Expr>> {
        expr.transform_up(|e| match e {
            Expr::ScalarFunction(ScalarFunction { func, args })
                if AMPLIFIERS.contains(&func.name())
                    && func.inner().as_any().downcast_ref::<Reserving>().is_none() =>
            {
                let wrapped = Reserving::wrap(func, self.pool.clone(), volatile);
                Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                    func: wrapped,
                    args,
                })))
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::StringConcat,
                right,
            }) if is_string(&left, inputs) && is_string(&right, inputs) => {
                let concat = Arc::new(ScalarUDF::new_from_impl(StringConcat::new()));
                let func = Reserving::wrap(concat, self.pool.clone(), volatile);
                Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                    func,
                    args: vec![*left, *right],
                })))
            }
            other => Ok(Transformed::no(other)),
        })
    }

    /// A projection's output expression holding a long literal, wrapped so that a constant
    /// answer reserves its copy on every row.
    fn wrap_output(&self, expr: Expr) -> Result<Transformed<Expr>> {
        if let Expr::Alias(alias) = expr {
            let Alias {
                expr,
                relation,
                name,
                metadata,
            } = alias;
            return Ok(self.wrap_output(*expr)?.update_data(|expr| {
                Expr::Alias(Alias {
                    expr: Box::new(expr),
                    relation,
                    name,
                    metadata,
                })
            }));
        }
        let long = expr
            .exists(|e| Ok(matches!(e, Expr::Literal(v, _) if v.size() > LONG_LITERAL)))
            .unwrap_or(false);
        if !long {
            return Ok(Transformed::no(expr));
        }
        let constant = Arc::new(ScalarUDF::new_from_impl(Copied::new()));
        Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
            func: Reserving::wrap(constant, self.pool.clone(), true),
            args: vec![expr],
        })))
    }
}

/// Whether `expr` is a string over one of `inputs`, the schemas of the plan node's inputs
/// (where `||` joins strings; on lists it is an array function already).
fn is_string(expr: &Expr, inputs: &[DFSchemaRef]) -> bool {
    inputs.iter().any(|input| {
        expr.get_type(input)
            .is_ok_and(|t| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
    })
}

impl AnalyzerRule for Reserve {
    fn name(&self) -> &str {
        "basin_reserve_function_outputs"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        // The names of the plan's outputs stay as they were: the wrappers print as what
        // they wrap.
        plan.transform_up_with_subqueries(|node| {
            let inputs: Vec<DFSchemaRef> = node
                .inputs()
                .iter()
                .map(|i| Arc::clone(i.schema()))
                .collect();
            let projection = matches!(node, LogicalPlan::Projection(_));
            // A condition's calls make no rows; folding them keeps filters prunable.
            let volatile = !matches!(node, LogicalPlan::Filter(_) | LogicalPlan::Join(_));
            let wrapped = node.map_expressions(|e| {
                self.wrap(e, &inputs, volatile)?
                    .transform_data(|e| match projection {
                        true => self.wrap_output(e),
                        false => Ok(Transformed::no(e)),
                    })
            })?;
            // The outputs keep their names and types; their nullability may change.
            match wrapped.transformed {
                true => wrapped.map_data(LogicalPlan::recompute_schema),
                false => Ok(wrapped),
            }
        })
        .map(|t| t.data)
    }
}

/// A function that reserves room for its output before it makes it.
#[derive(Debug)]
pub(crate) struct Reserving {
    inner: Arc<ScalarUDF>,
    /// The inner function's; volatile where the output becomes rows (computed with the
    /// query, never while planning).
    signature: Signature,
    pool: Arc<dyn MemoryPool>,
}

impl Reserving {
    fn wrap(inner: Arc<ScalarUDF>, pool: Arc<dyn MemoryPool>, volatile: bool) -> Arc<ScalarUDF> {
        let mut signature = inner.signature().clone();
        if volatile {
            signature.volatility = Volatility::Volatile;
        }
        Arc::new(ScalarUDF::new_from_impl(Self {
            inner,
            signature,
            pool,
        }))
    }
}

impl PartialEq for Reserving {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for Reserving {}

impl Hash for Reserving {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl ScalarUDFImpl for Reserving {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // What it makes, and what it holds while it does.
        let held: usize = args
            .args
            .iter()
            .filter_map(|v| match v {
                ColumnarValue::Array(a) => Some(a.get_array_memory_size()),
                ColumnarValue::Scalar(_) => None,
            })
            .sum();
        let bytes = estimate(self.inner.name(), &args).saturating_add(held);
        let reservation = MemoryConsumer::new(format!("function `{}`'s output", self.inner.name()))
            .register(&self.pool);
        reservation.try_grow(bytes)?;
        let out = self.inner.invoke_with_args(args);
        // From here the output is a batch like any other, the operators' to account.
        drop(reservation);
        out
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn output_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<datafusion::logical_expr::sort_properties::SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn evaluate_bounds(
        &self,
        input: &[&datafusion::logical_expr::interval_arithmetic::Interval],
    ) -> Result<datafusion::logical_expr::interval_arithmetic::Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &datafusion::logical_expr::interval_arithmetic::Interval,
        inputs: &[&datafusion::logical_expr::interval_arithmetic::Interval],
    ) -> Result<Option<Vec<datafusion::logical_expr::interval_arithmetic::Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }
}

/// `||` on strings, as a function (so that it reserves like the rest): null when either
/// side is, else the two joined. Computed by DataFusion's own `||`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct StringConcat {
    signature: Signature,
}

impl StringConcat {
    fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for StringConcat {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "||"
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(format!(
            "{} || {}",
            args[0].schema_name(),
            args[1].schema_name()
        ))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    /// Null only where a side may be, as `||` itself.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(arrow::datatypes::Field::new(
            "||",
            args.arg_fields[0].data_type().clone(),
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::physical_expr::PhysicalExpr;
        use datafusion::physical_expr::expressions::{BinaryExpr as Binary, Column};
        let [left, right] = <[ColumnarValue; 2]>::try_from(args.args)
            .map_err(|_| DataFusionError::Internal("`||` takes two arguments".to_string()))?;
        let rows = args.number_rows;
        let (left, right) = (left.into_array(rows)?, right.into_array(rows)?);
        // The fields as the arrays are, whatever their declared nullability.
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("l", left.data_type().clone(), true),
            arrow::datatypes::Field::new("r", right.data_type().clone(), true),
        ]));
        let batch = arrow::record_batch::RecordBatch::try_new(schema, vec![left, right])?;
        let concat = Binary::new(
            Arc::new(Column::new("l", 0)),
            Operator::StringConcat,
            Arc::new(Column::new("r", 1)),
        );
        concat.evaluate(&batch)
    }
}

#[cfg(test)]
mod tests;
