//! How many bytes an amplifying call makes from its arguments: an upper bound, per batch.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};

use super::copied::COPIED;

/// An upper bound of the bytes `function` makes from `args`, for one batch.
pub(super) fn estimate(function: &str, args: &ScalarFunctionArgs) -> usize {
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
        // The template and each argument once as text, quotes doubled at most.
        "format" => values
            .iter()
            .map(|v| as_text(v, rows))
            .fold(0usize, usize::saturating_add)
            .saturating_mul(2),
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

/// The bytes of `value` over `rows` rows once cast to text: a string as it is; anything else
/// (a number of 8 bytes is up to 20 characters, a timestamp 29, a decimal of 16 bytes 40)
/// at least 48 a row, or four times its bytes (a list's or a struct's text).
fn as_text(value: &ColumnarValue, rows: usize) -> usize {
    let bytes = size(value, rows);
    match value.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => bytes,
        _ => bytes.saturating_mul(4).max(rows.saturating_mul(48)),
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
