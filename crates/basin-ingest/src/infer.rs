//! Column type inference from text, for CSV files.
//!
//! arrow-csv infers Int64, Float64, Boolean, dates and strings, but not decimals; Basin keeps
//! money-like columns exact, so this looks at every sampled value and picks the narrowest
//! type that holds them all: BOOLEAN, BIGINT, DECIMAL (when every value has a fixed-point
//! form), DOUBLE, DATE, TIMESTAMP, TIMESTAMPTZ, else STRING.

use arrow::array::StringArray;
use arrow::datatypes::{DataType, TimeUnit};

#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    values: usize,
    booleans: usize,
    integers: usize,
    fixed_points: usize,
    floats: usize,
    dates: usize,
    timestamps: usize,
    timestamptzs: usize,
    max_integer_digits: usize,
    max_scale: usize,
}

/// The type for a column whose sampled values are `values` (nulls ignored).
pub fn infer_column(values: &StringArray) -> DataType {
    let mut seen = Seen::default();
    for v in values.iter().flatten() {
        // Not trimmed: arrow-csv parses a value as written, so ` 1` is text, not a number.
        if v.is_empty() {
            continue;
        }
        seen.values += 1;
        if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") {
            seen.booleans += 1;
        } else if let Some((int_digits, scale)) = fixed_point(v) {
            seen.max_integer_digits = seen.max_integer_digits.max(int_digits);
            if scale == 0 {
                seen.integers += 1;
            } else {
                seen.fixed_points += 1;
                seen.max_scale = seen.max_scale.max(scale);
            }
        } else if v.parse::<f64>().is_ok() {
            seen.floats += 1;
        } else if is_date(v) {
            seen.dates += 1;
        } else if let Some(with_zone) = timestamp(v) {
            if with_zone {
                seen.timestamptzs += 1;
            } else {
                seen.timestamps += 1;
            }
        } else {
            return DataType::Utf8;
        }
    }
    let all = |n: usize| n == seen.values;
    let numeric = seen.integers + seen.fixed_points;
    if seen.values == 0 {
        DataType::Utf8
    } else if all(seen.booleans) {
        DataType::Boolean
    } else if all(seen.integers) && seen.max_integer_digits <= 18 {
        DataType::Int64
    } else if all(numeric) && seen.max_scale <= 18 && seen.max_integer_digits + seen.max_scale <= 38
    {
        // Room to grow past the sample: 18 digits while the values are small, else 38.
        let precision = if seen.max_integer_digits + seen.max_scale <= 15 {
            18
        } else {
            38
        };
        DataType::Decimal128(precision, seen.max_scale as i8)
    } else if all(numeric + seen.floats) {
        DataType::Float64
    } else if all(seen.dates) {
        DataType::Date32
    } else if all(seen.timestamps) {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    } else if all(seen.timestamptzs) {
        DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
    } else {
        DataType::Utf8
    }
}

/// `Some((integer digits, fractional digits))` for `-12.345`-style text.
fn fixed_point(v: &str) -> Option<(usize, usize)> {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || !all_digits(int)
        || !all_digits(frac)
        || (digits.contains('.') && frac.is_empty())
    {
        return None;
    }
    Some((int.trim_start_matches('0').len().max(1), frac.len()))
}

fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()
}

/// `Some(has_zone)` for ISO-8601 date-times.
fn timestamp(v: &str) -> Option<bool> {
    if v.len() < 16 || !v.get(..10).is_some_and(is_date) || !matches!(v.as_bytes()[10], b'T' | b' ')
    {
        return None;
    }
    if chrono::DateTime::parse_from_rfc3339(&v.replace(' ', "T")).is_ok() {
        return Some(true);
    }
    // With seconds: arrow's readers refuse `2024-01-31 10:00`.
    let formats = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];
    formats
        .iter()
        .any(|f| chrono::NaiveDateTime::parse_from_str(v, f).is_ok())
        .then_some(false)
}

/// The wider of two inferred types, when files of one import disagree.
pub fn widen(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    match (a, b) {
        (x, y) if x == y => Some(x.clone()),
        (Int64, Decimal128(p, s)) | (Decimal128(p, s), Int64) => {
            Some(Decimal128((*p).max(18 + *s as u8).min(38), *s))
        }
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            Some(Decimal128((*p1).max(*p2), (*s1).max(*s2)))
        }
        (Int64 | Decimal128(..) | Float64, Int64 | Decimal128(..) | Float64) => Some(Float64),
        // Anything can be read as text, so a text column stays text.
        (Utf8, _) => Some(Utf8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(values: &[&str]) -> DataType {
        infer_column(&StringArray::from(values.to_vec()))
    }

    #[test]
    fn picks_the_narrowest_type_that_holds_every_value() {
        assert_eq!(infer(&["1", "-2", ""]), DataType::Int64);
        assert_eq!(infer(&["1.50", "2", "0.04"]), DataType::Decimal128(18, 2));
        assert_eq!(infer(&["1e3", "2.5"]), DataType::Float64);
        assert_eq!(infer(&["true", "FALSE"]), DataType::Boolean);
        assert_eq!(infer(&["2024-01-31", "1999-12-01"]), DataType::Date32);
        assert_eq!(
            infer(&["2024-01-31 10:00:00", "2024-01-31T10:00:00.5"]),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(
            infer(&["2024-01-31T10:00:00Z", "2024-01-31 10:00:00+02:00"]),
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        );
        assert_eq!(infer(&["1", "x"]), DataType::Utf8);
        assert_eq!(infer(&[" 1 ", "2"]), DataType::Utf8, "padded, as read");
        assert_eq!(infer(&["2024-01-31 10:00"]), DataType::Utf8, "no seconds");
        assert_eq!(infer(&["2024-13-40"]), DataType::Utf8);
        assert_eq!(
            infer(&["Müller-Lüdenscheidt", "東京都千代田区丸の内"]),
            DataType::Utf8,
            "multi-byte text"
        );
        assert_eq!(infer(&["", ""]), DataType::Utf8);
    }

    #[test]
    fn widens_numbers_and_refuses_the_rest() {
        assert_eq!(
            widen(&DataType::Int64, &DataType::Float64),
            Some(DataType::Float64)
        );
        assert_eq!(widen(&DataType::Date32, &DataType::Int64), None);
        assert_eq!(
            widen(&DataType::Int64, &DataType::Utf8),
            None,
            "a later file's text must not turn numbers into text"
        );
    }
}
