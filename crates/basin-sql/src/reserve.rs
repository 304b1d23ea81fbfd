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

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchemaRef, DataFusionError, Result, ScalarValue};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::expr::Alias;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, ExprSchemable, LogicalPlan, Operator,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

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

/// An upper bound of the bytes `function` makes from `args`, for one batch.
fn estimate(function: &str, args: &ScalarFunctionArgs) -> usize {
    let rows = args.number_rows.max(1);
    let values = &args.args;
    match function {
        "repeat" => per_row(values, rows, |row| {
            Some(length(&values[0], row)?.saturating_mul(count(&values[1], row)?))
        }),
        "lpad" | "rpad" => per_row(values, rows, |row| {
            // Characters of up to 4 bytes each.
            Some(count(&values[1], row)?.saturating_mul(4))
        }),
        "generate_series" | "range" => per_row(values, rows, |row| {
            let first = values.first()?;
            let start = integer(first, row)?;
            let (start, stop) = match values.len() {
                1 => (0, start),
                _ => (start, integer(&values[1], row)?),
            };
            let step = match values.get(2) {
                Some(step) => step_of(step, row, &first.data_type())?,
                None => 1,
            };
            let span = (stop.abs_diff(start) / step.unsigned_abs().max(1)).saturating_add(1);
            Some(
                usize::try_from(span)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(8),
            )
        }),
        "array_repeat" => per_row(values, rows, |row| {
            let each = size(&values[0], rows) / rows;
            Some(count(&values[1], row)?.saturating_mul(each.max(8)))
        }),
        "array_resize" => per_row(values, rows, |row| {
            Some(count(&values[1], row)?.saturating_mul(16))
        }),
        "replace" => per_row(values, rows, |row| {
            let text = length(&values[0], row)?;
            let from = length(&values[1], row)?.max(1);
            let to = length(&values[2], row)?;
            Some(text.saturating_add((text / from + 1).saturating_mul(to)))
        }),
        "regexp_replace" => per_row(values, rows, |row| {
            let text = length(&values[0], row)?;
            let to = length(&values[2], row)?;
            Some(text.saturating_add((text + 1).saturating_mul(to)))
        }),
        // A constant answer is copied to every row; a column is already made.
        COPIED => match &values[0] {
            ColumnarValue::Scalar(v) => v.size().saturating_mul(rows),
            ColumnarValue::Array(_) => 0,
        },
        "translate" => size(&values[0], rows).saturating_mul(4),
        "to_hex" | "encode" => values
            .iter()
            .map(|v| size(v, rows))
            .sum::<usize>()
            .saturating_mul(2),
        // One byte of text becomes an element (a value and its offsets).
        "string_to_array" => size(&values[0], rows).saturating_mul(16),
        // The separator between every two of the rest.
        "concat_ws" => {
            let joined = values.len().saturating_sub(2);
            let separators = size(&values[0], rows).saturating_mul(joined);
            values[1..]
                .iter()
                .map(|v| size(v, rows))
                .sum::<usize>()
                .saturating_add(separators)
        }
        // What it joins: every argument counted as often as it is given (a column joined
        // with itself a hundred times makes a hundred copies).
        _ => values.iter().map(|v| size(v, rows)).sum(),
    }
}

/// The sum over the batch's rows of `each(row)`; a row whose arguments are null or not
/// understood counts nothing (the function makes nothing, or nothing of note, there).
fn per_row(values: &[ColumnarValue], rows: usize, each: impl Fn(usize) -> Option<usize>) -> usize {
    let rows = if values.iter().all(|v| matches!(v, ColumnarValue::Scalar(_))) {
        // All constants: one row's worth, made for every row.
        return each(0).unwrap_or(0).saturating_mul(rows);
    } else {
        rows
    };
    (0..rows)
        .map(|row| each(row).unwrap_or(0))
        .fold(0usize, usize::saturating_add)
}

/// The bytes of `value` over `rows` rows (a constant counts once per row).
fn size(value: &ColumnarValue, rows: usize) -> usize {
    match value {
        ColumnarValue::Array(array) => array.to_data().get_slice_memory_size().unwrap_or(0),
        ColumnarValue::Scalar(scalar) => scalar.size().saturating_mul(rows),
    }
}

/// The byte length of a string or binary value at `row`.
fn length(value: &ColumnarValue, row: usize) -> Option<usize> {
    match value {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                v.as_ref().map(String::len)
            }
            ScalarValue::Binary(v) | ScalarValue::LargeBinary(v) | ScalarValue::BinaryView(v) => {
                v.as_ref().map(Vec::len)
            }
            _ => None,
        },
        ColumnarValue::Array(a) => array_length(a, row),
    }
}

fn array_length(array: &ArrayRef, row: usize) -> Option<usize> {
    if row >= array.len() || array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).len(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).len(),
        DataType::Utf8View => array.as_string_view().value(row).len(),
        DataType::Binary => array.as_binary::<i32>().value(row).len(),
        DataType::LargeBinary => array.as_binary::<i64>().value(row).len(),
        DataType::BinaryView => array.as_binary_view().value(row).len(),
        _ => return None,
    })
}

/// A count argument at `row`, as a non-negative number.
fn count(value: &ColumnarValue, row: usize) -> Option<usize> {
    let n = integer(value, row)?;
    Some(usize::try_from(n.max(0)).unwrap_or(usize::MAX))
}

/// A series' step at `row`, in the units of its start's type: a number, or an interval in
/// the nanoseconds, microseconds, milliseconds or seconds of a timestamp or the days of a
/// date (a month counted as its shortest, 28 days: the most steps).
fn step_of(value: &ColumnarValue, row: usize, start: &DataType) -> Option<i64> {
    use arrow::datatypes::{IntervalMonthDayNanoType, IntervalUnit, TimeUnit};
    let interval = match value {
        ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(v)) => (*v)?,
        ColumnarValue::Array(a)
            if a.data_type() == &DataType::Interval(IntervalUnit::MonthDayNano) =>
        {
            if row >= a.len() || a.is_null(row) {
                return None;
            }
            a.as_primitive::<IntervalMonthDayNanoType>().value(row)
        }
        _ => return integer(value, row),
    };
    const DAY_NS: i128 = 86_400_000_000_000;
    let nanos = i128::from(interval.months) * 28 * DAY_NS
        + i128::from(interval.days) * DAY_NS
        + i128::from(interval.nanoseconds);
    let per_unit: i128 = match start {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
        DataType::Date32 | DataType::Date64 => DAY_NS,
        _ => return None,
    };
    // A step shorter than the start's unit still moves by at least one unit.
    i64::try_from((nanos.abs() / per_unit).max(1)).ok()
}

/// An integer argument at `row`.
fn integer(value: &ColumnarValue, row: usize) -> Option<i64> {
    match value {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(v) => v,
            _ => None,
        },
        ColumnarValue::Array(a) => {
            if row >= a.len() || a.is_null(row) {
                return None;
            }
            let cast = arrow::compute::cast(&a.slice(row, 1), &DataType::Int64).ok()?;
            Some(cast.as_primitive::<Int64Type>().value(0))
        }
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

/// The name [`Copied`] goes by in errors.
const COPIED: &str = "a long constant";

/// Its argument as it is: the wrapper that reserves a projection's constant answer.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Copied {
    signature: Signature,
}

impl Copied {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Copied {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        COPIED
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(args[0].schema_name().to_string())
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::clone(&args.arg_fields[0]))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        args.args
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal(format!("`{COPIED}` takes one argument")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, RecordBatch};
    use arrow::datatypes::Int32Type;
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    /// A session whose pool holds `limit` bytes, with the rule or without.
    fn session(limit: usize, reserve: bool) -> SessionContext {
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(limit));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool.clone())
            .build_arc()
            .unwrap();
        let mut state = SessionStateBuilder::new()
            .with_default_features()
            .with_runtime_env(runtime);
        if reserve {
            state = state.with_analyzer_rule(Arc::new(super::Reserve::new(pool)));
        }
        SessionContext::new_with_state(state.build())
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, String> {
        match ctx.sql(sql).await {
            Ok(frame) => frame.collect().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    const LIMIT: usize = 64 << 20;

    #[tokio::test]
    async fn a_function_making_more_than_the_pool_holds_is_refused_before_it_makes_it() {
        let ctx = session(LIMIT, true);
        for (sql, function) in [
            ("SELECT length(repeat('x', 200000000))", "repeat"),
            ("SELECT generate_series(1, 100000000)", "generate_series"),
            (
                "SELECT cardinality(array_repeat(1, 100000000))",
                "array_repeat",
            ),
            ("SELECT length(lpad('x', 100000000))", "lpad"),
            (
                "SELECT cardinality(range(TIMESTAMP '2000-01-01', TIMESTAMP '2100-01-01', \
                 INTERVAL '1 second'))",
                "range",
            ),
            (
                "SELECT length(s || s || s || s || s || s || s || s || s || s || s || s) \
                 FROM (SELECT repeat('x', 8000000) AS s)",
                "||",
            ),
        ] {
            let error = run(&ctx, sql).await.expect_err(sql);
            assert!(
                error.contains(&format!("function `{function}`'s output")),
                "{sql}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn what_fits_answers_as_without_the_rule_under_the_same_names() {
        let (with, without) = (session(LIMIT, true), session(LIMIT, false));
        for sql in [
            "SELECT length(repeat('ab', 1000)) AS n, 'a' || 'b', cardinality(generate_series(1, 10))",
            "SELECT concat(s, s), s || 'x' FROM (SELECT repeat('y', 3) AS s)",
            "SELECT lpad(CAST(value AS VARCHAR), 5, '0') FROM range(3)",
        ] {
            let (a, b) = (
                run(&with, sql).await.unwrap(),
                run(&without, sql).await.unwrap(),
            );
            assert!(!a.is_empty(), "{sql}");
            // The same names and values (a constant folded while planning is known not to
            // be null; a call made with the query may be).
            let names = |batches: &[RecordBatch]| {
                batches[0]
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(names(&a), names(&b), "{sql}");
            let values = |batches: &[RecordBatch]| {
                batches
                    .iter()
                    .map(|b| b.columns().to_vec())
                    .collect::<Vec<_>>()
            };
            assert_eq!(values(&a), values(&b), "{sql}");
        }
    }

    #[tokio::test]
    async fn a_filters_constants_still_fold_so_that_the_filter_reaches_the_scan() {
        let ctx = session(LIMIT, true);
        ctx.sql("CREATE TABLE t (s VARCHAR) AS VALUES ('ab'), ('cd')")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let frame = ctx
            .sql("SELECT s FROM t WHERE s = 'a' || 'b' AND s <> repeat('x', 3)")
            .await
            .unwrap();
        let plan = frame.clone().into_optimized_plan().unwrap();
        let shown = plan.display_indent().to_string();
        // Folded to constants (and the second condition found implied by the first).
        assert!(
            shown.contains("(\"ab\")") && !shown.contains("||") && !shown.contains("repeat"),
            "{shown}"
        );
        let rows: usize = frame
            .collect()
            .await
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 1);
    }

    #[tokio::test]
    async fn a_long_constant_on_every_row_reserves_its_copies() {
        let ctx = session(LIMIT, true);
        let long = format!("'{}'", "x".repeat(100_000));
        // 100 kB on each of a batch's 8192 rows: 800 MB.
        let copied = format!("SELECT {long} AS s FROM range(10000)");
        let error = run(&ctx, &copied).await.expect_err("copied");
        assert!(error.contains("a long constant"), "{error}");
        // Its length is a small answer on every row.
        let measured = format!("SELECT length({long}) AS n FROM range(10000)");
        let batches = run(&ctx, &measured).await.unwrap();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 10000);
        assert_eq!(
            batches[0].column(0).as_primitive::<Int32Type>().value(0),
            100_000
        );
    }
}
