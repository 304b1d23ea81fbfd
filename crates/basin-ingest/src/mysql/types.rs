//! MySQL and MariaDB column types, as Basin stores them, and the values the binary protocol
//! gives for them, decoded into Arrow.
//!
//! - integers widen where unsigned values need it (`int unsigned` → long, `bigint unsigned`
//!   → decimal(20,0)); `bit(n)` → long (`bit(64)` → decimal(20,0));
//! - `decimal(p,s)` → decimal(p,s) up to 38 digits (MySQL allows 65: wider ones are named);
//! - `datetime` → timestamp (no time zone, as MySQL keeps it); `timestamp` → timestamptz,
//!   read in UTC (the session's time zone is set to `+00:00`); `date` → date, with MySQL's zero
//!   dates (`0000-00-00`) as null; `year` → int;
//! - `time` → string (`-838:59:59` to `838:59:59` is a duration, not a time of day);
//! - character types, `enum`, `set` and `json` → string; binary types and blobs → binary;
//! - spatial types are not loadable (named, or left out with `--skip-unsupported`).

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int32Builder, Int64Builder, LargeBinaryBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::NaiveDate;
use iceberg::spec::{PrimitiveType, Type};
use mysql_async::Value;

use crate::database::SourceColumn;

/// A column as `information_schema.COLUMNS` describes it.
#[derive(Clone, Debug)]
pub(crate) struct MyColumn {
    pub name: String,
    /// `DATA_TYPE`: `int`, `varchar`, ...
    pub data_type: String,
    /// `COLUMN_TYPE`, for messages: `int(10) unsigned`, `decimal(12,2)`.
    pub display: String,
    pub precision: Option<u64>,
    pub scale: Option<u64>,
    /// `DATETIME_PRECISION`: the digits of a second's fraction `time` values print.
    pub fraction_digits: Option<u64>,
    /// `CHARACTER_SET_NAME` of a text column: the binary log keeps its bytes in it.
    pub charset: Option<String>,
}

/// What a column becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Long,
    /// A decimal of this precision and scale (unsigned `bigint`: 20, 0).
    Decimal(u8, i8),
    Float,
    Double,
    Date,
    DateTime,
    Timestamp,
    /// With the digits of its second's fraction.
    Time(u8),
    String,
    Binary,
    Bit,
    /// `bit(64)`: bits as an unsigned 64-bit number, in a decimal(20, 0).
    Bit64,
}

impl MyColumn {
    /// What the column becomes, or why it cannot be loaded.
    pub(crate) fn kind(&self) -> Result<Kind, String> {
        let unsigned = self.display.contains("unsigned");
        Ok(match self.data_type.as_str() {
            "tinyint" | "smallint" | "mediumint" | "year" => Kind::Int,
            "int" | "integer" if unsigned => Kind::Long,
            "int" | "integer" => Kind::Int,
            "bigint" if unsigned => Kind::Decimal(20, 0),
            "bigint" => Kind::Long,
            "decimal" | "numeric" => {
                let precision = self.precision.unwrap_or(10);
                let scale = self.scale.unwrap_or(0);
                if precision > 38 {
                    return Err(format!(
                        "{} holds up to {precision} digits, and Basin's decimals 38",
                        self.display
                    ));
                }
                Kind::Decimal(precision as u8, scale as i8)
            }
            "float" => Kind::Float,
            "double" | "real" => Kind::Double,
            "date" => Kind::Date,
            "datetime" => Kind::DateTime,
            "timestamp" => Kind::Timestamp,
            "time" => Kind::Time(self.fraction_digits.unwrap_or(0).min(6) as u8),
            "bit" if self.precision.unwrap_or(1) >= 64 => Kind::Bit64,
            "bit" => Kind::Bit,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" | "json" => Kind::String,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                Kind::Binary
            }
            other => return Err(format!("type {other} has no Basin type")),
        })
    }
}

impl Kind {
    pub(crate) fn iceberg_type(self) -> Type {
        Type::Primitive(match self {
            Kind::Int => PrimitiveType::Int,
            Kind::Long | Kind::Bit => PrimitiveType::Long,
            Kind::Decimal(precision, scale) => PrimitiveType::Decimal {
                precision: precision as u32,
                scale: scale as u32,
            },
            Kind::Bit64 => PrimitiveType::Decimal {
                precision: 20,
                scale: 0,
            },
            Kind::Float => PrimitiveType::Float,
            Kind::Double => PrimitiveType::Double,
            Kind::Date => PrimitiveType::Date,
            Kind::DateTime => PrimitiveType::Timestamp,
            Kind::Timestamp => PrimitiveType::Timestamptz,
            Kind::Time(_) | Kind::String => PrimitiveType::String,
            Kind::Binary => PrimitiveType::Binary,
        })
    }
}

impl SourceColumn for (MyColumn, Kind) {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn display(&self) -> &str {
        &self.0.display
    }

    fn iceberg_type(&self, _element_id: i32) -> Type {
        self.1.iceberg_type()
    }
}

/// One column's values being gathered into an Arrow array of the table's type.
pub(crate) struct Column {
    kind: Kind,
    builder: Box<dyn ArrayBuilder>,
}

impl Column {
    /// A builder for values of `kind`, making arrays of `data_type` (the table's).
    pub(crate) fn new(kind: Kind, data_type: &DataType) -> Result<Self, String> {
        let builder: Box<dyn ArrayBuilder> = match data_type {
            DataType::Int32 => Box::new(Int32Builder::new()),
            DataType::Int64 => Box::new(Int64Builder::new()),
            DataType::Float32 => Box::new(Float32Builder::new()),
            DataType::Float64 => Box::new(Float64Builder::new()),
            DataType::Decimal128(p, s) => Box::new(
                Decimal128Builder::new()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| e.to_string())?,
            ),
            DataType::Date32 => Box::new(Date32Builder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, zone) => {
                Box::new(TimestampMicrosecondBuilder::new().with_timezone_opt(zone.clone()))
            }
            DataType::Utf8 => Box::new(StringBuilder::new()),
            DataType::Binary => Box::new(BinaryBuilder::new()),
            DataType::LargeBinary => Box::new(LargeBinaryBuilder::new()),
            other => return Err(format!("no reader for {other}")),
        };
        Ok(Self { kind, builder })
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        self.builder.finish()
    }

    /// Appends one value; `Err` says why it does not fit.
    pub(crate) fn push(&mut self, value: Value) -> Result<(), String> {
        let any = self.builder.as_any_mut();
        macro_rules! put {
            ($builder:ty, $value:expr) => {{
                let builder = any
                    .downcast_mut::<$builder>()
                    .expect("the builder of its type");
                match $value {
                    Some(v) => builder.append_value(v),
                    None => builder.append_null(),
                }
            }};
        }
        if value == Value::NULL {
            return self.push_null();
        }
        match self.kind {
            Kind::Int => put!(Int32Builder, Some(integer(&value)? as i32)),
            Kind::Long => put!(Int64Builder, Some(integer(&value)? as i64)),
            Kind::Bit => put!(Int64Builder, Some(bits(&value)? as i64)),
            Kind::Decimal(_, scale) => put!(Decimal128Builder, Some(decimal(&value, scale)?)),
            Kind::Bit64 => put!(Decimal128Builder, Some(bits(&value)? as i128)),
            Kind::Float => put!(Float32Builder, Some(float(&value)? as f32)),
            Kind::Double => put!(Float64Builder, Some(float(&value)?)),
            Kind::Date => put!(Date32Builder, date(&value)?.map(|(days, _)| days)),
            Kind::DateTime | Kind::Timestamp => {
                put!(TimestampMicrosecondBuilder, date(&value)?.map(|(_, us)| us))
            }
            Kind::Time(digits) => put!(StringBuilder, Some(time(&value, digits)?)),
            Kind::String => put!(StringBuilder, Some(text(value)?)),
            Kind::Binary => match any.downcast_mut::<BinaryBuilder>() {
                Some(builder) => builder.append_value(bytes(&value)?),
                None => put!(LargeBinaryBuilder, Some(bytes(&value)?)),
            },
        }
        Ok(())
    }

    fn push_null(&mut self) -> Result<(), String> {
        let any = self.builder.as_any_mut();
        macro_rules! null {
            ($($builder:ty),*) => {
                $(if let Some(b) = any.downcast_mut::<$builder>() { b.append_null(); return Ok(()); })*
            };
        }
        null!(
            Int32Builder,
            Int64Builder,
            Float32Builder,
            Float64Builder,
            Decimal128Builder,
            Date32Builder,
            TimestampMicrosecondBuilder,
            StringBuilder,
            BinaryBuilder,
            LargeBinaryBuilder
        );
        Err("no builder".into())
    }
}

fn unexpected(value: &Value) -> String {
    format!("unexpected value {value:?}")
}

fn integer(value: &Value) -> Result<i128, String> {
    match value {
        Value::Int(v) => Ok(*v as i128),
        Value::UInt(v) => Ok(*v as i128),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unexpected(value)),
        other => Err(unexpected(other)),
    }
}

fn float(value: &Value) -> Result<f64, String> {
    match value {
        Value::Float(v) => Ok(*v as f64),
        Value::Double(v) => Ok(*v),
        Value::Int(v) => Ok(*v as f64),
        Value::UInt(v) => Ok(*v as f64),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unexpected(value)),
        other => Err(unexpected(other)),
    }
}

/// A `bit(n)` value: big-endian bytes.
fn bits(value: &Value) -> Result<u64, String> {
    match value {
        Value::Bytes(b) if b.len() <= 8 => Ok(b.iter().fold(0u64, |n, byte| n << 8 | *byte as u64)),
        other => integer(other).map(|n| n as u64),
    }
}

/// A decimal's text (or an unsigned integer) as an integer scaled by `scale`.
fn decimal(value: &Value, scale: i8) -> Result<i128, String> {
    let text = match value {
        Value::Bytes(b) => std::str::from_utf8(b)
            .map_err(|_| unexpected(value))?
            .to_string(),
        other => return integer(other).map(|n| n * 10i128.pow(scale.max(0) as u32)),
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = scale.max(0) as usize;
    if fraction.len() > scale
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return Err(format!("`{text}` is not a decimal of scale {scale}"));
    }
    let scaled = format!("{whole}{fraction:0<scale$}");
    let n: i128 = scaled
        .parse()
        .map_err(|_| format!("`{text}` does not fit"))?;
    Ok(if negative { -n } else { n })
}

/// A date or date-time: its day since 1970 and its microsecond since 1970 (UTC for a
/// `timestamp`, read in a `+00:00` session). MySQL's zero dates are null.
fn date(value: &Value) -> Result<Option<(i32, i64)>, String> {
    let Value::Date(y, m, d, h, mi, s, us) = *value else {
        return Err(unexpected(value));
    };
    if y == 0 || m == 0 || d == 0 {
        return Ok(None);
    }
    let day =
        NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32).ok_or_else(|| unexpected(value))?;
    let at = day
        .and_hms_micro_opt(h as u32, mi as u32, s as u32, us)
        .ok_or_else(|| unexpected(value))?;
    let days = day
        .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
        .num_days();
    Ok(Some((days as i32, at.and_utc().timestamp_micros())))
}

/// A `time` as MySQL prints it: `[-]HH:MM:SS[.f]` with the column's digits of a second's
/// fraction, hours past 24 as they are.
fn time(value: &Value, digits: u8) -> Result<String, String> {
    let Value::Time(negative, days, h, m, s, us) = *value else {
        return Err(unexpected(value));
    };
    let hours = days * 24 + h as u32;
    let sign = if negative { "-" } else { "" };
    let whole = format!("{sign}{hours:02}:{m:02}:{s:02}");
    Ok(match digits {
        0 => whole,
        d => format!("{whole}.{}", &format!("{us:06}")[..d as usize]),
    })
}

fn text(value: Value) -> Result<String, String> {
    match value {
        Value::Bytes(b) => String::from_utf8(b).map_err(|_| "not UTF-8 text".to_string()),
        other => Err(unexpected(&other)),
    }
}

fn bytes(value: &Value) -> Result<&[u8], String> {
    match value {
        Value::Bytes(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

/// The arrays of one batch, in column order.
pub(crate) fn finish(columns: &mut [Column]) -> Vec<ArrayRef> {
    columns.iter_mut().map(Column::finish).collect::<Vec<_>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_times_and_bits_read_exactly() {
        assert_eq!(decimal(&Value::Bytes(b"-12.5".to_vec()), 2), Ok(-1250));
        assert_eq!(decimal(&Value::Bytes(b"0.001".to_vec()), 3), Ok(1));
        assert!(decimal(&Value::Bytes(b"1.234".to_vec()), 2).is_err());
        assert_eq!(decimal(&Value::UInt(u64::MAX), 0), Ok(u64::MAX as i128));
        assert_eq!(
            time(&Value::Time(true, 1, 2, 3, 4, 5), 6).unwrap(),
            "-26:03:04.000005"
        );
        assert_eq!(
            time(&Value::Time(false, 0, 0, 0, 0, 0), 2).unwrap(),
            "00:00:00.00"
        );
        assert_eq!(bits(&Value::Bytes(vec![1, 0])), Ok(256));
        assert_eq!(date(&Value::Date(0, 0, 0, 0, 0, 0, 0)), Ok(None));
        assert_eq!(
            date(&Value::Date(1970, 1, 2, 0, 0, 1, 5)),
            Ok(Some((1, 86_401_000_005)))
        );
    }
}
