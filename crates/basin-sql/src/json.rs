//! Rows as JSON with exact numbers, the one rule for every JSON answer Basin gives (the HTTP
//! API, the console, `basin query --format json`):
//!
//! - **Decimals are strings with their scale:** `"10.50"`, `"0.00"`, `"-0.01"`. A JSON number
//!   would be read as a double by JavaScript, Python's `json` and jq, which round past 15-17
//!   digits and drop trailing zeros. Trino and BigQuery answer decimals as strings too.
//! - **64-bit integers are numbers while a double holds them exactly** (magnitude up to
//!   2^53 - 1, JavaScript's `Number.MAX_SAFE_INTEGER`) **and strings beyond**
//!   (`"9007199254740993"`). Counts and sums stay numbers for everyone; nothing is rounded.
//!   A client that converts by the column's type (`int(v)`, `BigInt(v)`) reads both forms.
//!
//! Everything else is Arrow's JSON writer as it is.
//!
//! ```
//! # use std::sync::Arc;
//! # use arrow::array::{Decimal128Array, RecordBatch};
//! let amount = Decimal128Array::from(vec![1050]).with_precision_and_scale(18, 2).unwrap();
//! let batch = RecordBatch::try_from_iter([("amount", Arc::new(amount) as _)]).unwrap();
//! let mut writer = basin_sql::json::writer().build::<_, arrow::json::writer::LineDelimited>(Vec::new());
//! writer.write(&batch).unwrap();
//! assert_eq!(String::from_utf8(writer.into_inner()).unwrap(), "{\"amount\":\"10.50\"}\n");
//! ```

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, AsArray, PrimitiveArray, RecordBatch, StructArray};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Field, FieldRef, Int64Type, UInt64Type};
use arrow::error::ArrowError;
use arrow::json::WriterBuilder;
use arrow::json::writer::{Encoder, EncoderFactory, EncoderOptions, NullableEncoder, make_encoder};
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// The largest integer magnitude a double (a JavaScript number) holds exactly, with its
/// neighbours: 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Arrow's JSON writer builder with Basin's exact numbers.
pub fn writer() -> WriterBuilder {
    WriterBuilder::new().with_encoder_factory(Arc::new(ExactNumbers))
}

/// The rows of `batch` as JSON objects, one at a time: `each` gets a row's bytes and says
/// whether to go on. Only one row is ever encoded at once, so a caller that stops at a size
/// never holds more than that size and one row (a whole batch of wide rows, encoded at
/// once, is many times the batch).
pub fn each_row(
    batch: &RecordBatch,
    mut each: impl FnMut(&[u8]) -> bool,
) -> Result<(), ArrowError> {
    let array = StructArray::from(batch.clone());
    let field = Arc::new(Field::new_struct(
        "",
        batch.schema().fields().clone(),
        false,
    ));
    let options = EncoderOptions::default().with_encoder_factory(Arc::new(ExactNumbers));
    let mut encoder = make_encoder(&field, &array, &options)?;
    let mut row = Vec::new();
    for idx in 0..batch.num_rows() {
        row.clear();
        encoder.encode(idx, &mut row);
        if !each(&row) {
            break;
        }
    }
    Ok(())
}

#[derive(Debug)]
struct ExactNumbers;

impl EncoderFactory for ExactNumbers {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        let nulls = array.logical_nulls();
        let encoder: Box<dyn Encoder + 'a> = match array.data_type() {
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => {
                let options = FormatOptions::new().with_display_error(true);
                Box::new(Quoted(ArrayFormatter::try_new(array, &options)?))
            }
            DataType::Int64 => Box::new(SafeInteger(array.as_primitive::<Int64Type>())),
            DataType::UInt64 => Box::new(SafeInteger(array.as_primitive::<UInt64Type>())),
            _ => return Ok(None),
        };
        Ok(Some(NullableEncoder::new(encoder, nulls)))
    }
}

/// A value as a JSON string of its display form (digits, a sign and a point: nothing to
/// escape).
struct Quoted<'a>(ArrayFormatter<'a>);

impl Encoder for Quoted<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "\"{}\"", self.0.value(idx));
    }
}

/// A 64-bit integer as a number when a double holds it exactly, else as a string.
struct SafeInteger<'a, T: ArrowPrimitiveType>(&'a PrimitiveArray<T>);

impl<T> Encoder for SafeInteger<'_, T>
where
    T: ArrowPrimitiveType,
    T::Native: Into<i128> + std::fmt::Display,
{
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let value = self.0.value(idx);
        let _ = if value.into().unsigned_abs() <= u128::from(MAX_SAFE_INTEGER) {
            write!(out, "{value}")
        } else {
            write!(out, "\"{value}\"")
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        Decimal128Array, Float64Array, Int32Array, Int64Array, RecordBatch, UInt64Array,
    };
    use arrow::json::writer::JsonArray;

    fn rows(batch: &RecordBatch) -> serde_json::Value {
        let mut writer = super::writer().build::<_, JsonArray>(Vec::new());
        writer.write(batch).expect("write");
        writer.finish().expect("finish");
        serde_json::from_slice(&writer.into_inner()).expect("valid JSON")
    }

    #[test]
    fn rows_one_at_a_time_are_the_writers_rows_and_stop_when_asked() {
        let big = (1u64 << 60) as i64;
        let ints = Int64Array::from(vec![Some(1), None, Some(big)]);
        let amounts = Decimal128Array::from(vec![1050, -1, 0])
            .with_precision_and_scale(18, 2)
            .unwrap();
        let batch = RecordBatch::try_from_iter([
            ("n", Arc::new(ints) as _),
            ("amount", Arc::new(amounts) as _),
        ])
        .unwrap();
        let mut seen = Vec::new();
        super::each_row(&batch, |row| {
            seen.push(serde_json::from_slice::<serde_json::Value>(row).expect("a row is JSON"));
            true
        })
        .unwrap();
        assert_eq!(serde_json::Value::Array(seen), rows(&batch));

        let mut calls = 0;
        super::each_row(&batch, |_| {
            calls += 1;
            false
        })
        .unwrap();
        assert_eq!(calls, 1, "a caller that says stop gets no more rows");
    }

    #[test]
    fn integers_beyond_what_a_double_holds_are_strings() {
        let safe = super::MAX_SAFE_INTEGER as i64;
        let ints = Int64Array::from(vec![
            Some(i64::MIN),
            Some(-safe - 1),
            Some(-safe),
            Some(0),
            None,
            Some(safe),
            Some(safe + 2),
            Some(i64::MAX),
        ]);
        let unsigned = UInt64Array::from(vec![0, 1, 2, 3, 4, 5, safe as u64 + 1, u64::MAX]);
        let batch = RecordBatch::try_from_iter([
            ("i", Arc::new(ints) as _),
            ("u", Arc::new(unsigned) as _),
        ])
        .expect("batch");
        let got = rows(&batch);
        let i: Vec<_> = got
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.get("i").cloned())
            .collect();
        assert_eq!(
            i,
            [
                Some("-9223372036854775808".into()),
                Some("-9007199254740992".into()),
                Some((-safe).into()),
                Some(0.into()),
                None,
                Some(safe.into()),
                Some("9007199254740993".into()),
                Some("9223372036854775807".into()),
            ]
        );
        assert_eq!(got[6]["u"], "9007199254740992");
        assert_eq!(got[7]["u"], "18446744073709551615");
        assert_eq!(got[5]["u"], 5);
    }

    #[test]
    fn decimals_are_strings_with_their_scale() {
        let money = Decimal128Array::from(vec![Some(200), Some(1050), Some(0), Some(-1), None])
            .with_precision_and_scale(18, 2)
            .expect("decimal(18,2)");
        let max = 10_i128.pow(38) - 1;
        let wide = Decimal128Array::from(vec![Some(max), Some(-max), Some(1), Some(0), None])
            .with_precision_and_scale(38, 10)
            .expect("decimal(38,10)");
        let batch = RecordBatch::try_from_iter([
            ("money", Arc::new(money) as _),
            ("wide", Arc::new(wide) as _),
        ])
        .expect("batch");
        let got = rows(&batch);
        let column = |name: &str| -> serde_json::Value {
            got.as_array()
                .expect("rows")
                .iter()
                .map(|r| r.get(name).cloned().unwrap_or_default())
                .collect()
        };
        assert_eq!(
            column("money"),
            serde_json::json!(["2.00", "10.50", "0.00", "-0.01", null])
        );
        assert_eq!(
            column("wide"),
            serde_json::json!([
                "9999999999999999999999999999.9999999999",
                "-9999999999999999999999999999.9999999999",
                "0.0000000001",
                "0.0000000000",
                null,
            ])
        );
    }

    #[test]
    fn other_numbers_stay_numbers() {
        let batch = RecordBatch::try_from_iter([
            ("i", Arc::new(Int32Array::from(vec![i32::MIN])) as _),
            ("f", Arc::new(Float64Array::from(vec![0.1])) as _),
        ])
        .expect("batch");
        assert_eq!(rows(&batch), serde_json::json!([{"i": i32::MIN, "f": 0.1}]));
    }
}
