//! A binary log row's values as the binary protocol gives them to a full load, so one decoder
//! ([`crate::mysql::types::Column`]) makes the same Arrow values of both. The log keeps less
//! than the protocol says: unsigned integers arrive signed unless the server logs their
//! signedness (and a signed `mediumint` unsigned), `timestamp` as seconds since the epoch, `year` as text, `enum` as the member's
//! number and `set` as a bit mask, `binary(n)` without its trailing zero bytes, and MySQL's
//! `json` in its binary form.

use chrono::{DateTime, Datelike, Timelike};
use mysql_async::Value;
use mysql_async::binlog::value::BinlogValue;

use crate::mysql::types::MyColumn;

/// `value` of `column` as the binary protocol would give it.
pub(super) fn normalize(column: &MyColumn, value: BinlogValue<'static>) -> Result<Value, String> {
    let value = match value {
        BinlogValue::Value(v) => v,
        json @ BinlogValue::Jsonb(_) => {
            Value::try_from(json).map_err(|e| format!("a JSON value: {e}"))?
        }
        BinlogValue::JsonDiff(_) => {
            return Err("a partial JSON update (binlog_row_value_options = PARTIAL_JSON)".into());
        }
    };
    if value == Value::NULL {
        return Ok(value);
    }
    let unsigned = column.display.contains("unsigned");
    Ok(match (column.data_type.as_str(), value) {
        (_, Value::Int(n)) if unsigned && n < 0 => {
            let bits = match column.data_type.as_str() {
                "tinyint" => 8,
                "smallint" => 16,
                "mediumint" => 24,
                "int" | "integer" => 32,
                _ => 64,
            };
            Value::UInt((n as u64) & (u64::MAX >> (64 - bits)))
        }
        // mysql_common reads a signed `mediumint`'s three bytes without extending the sign.
        ("mediumint", Value::Int(n)) if !unsigned && n > 0x7f_ffff => Value::Int(n - 0x100_0000),
        ("timestamp", Value::Int(seconds)) => utc(seconds, 0)?,
        ("timestamp", Value::Bytes(text)) => {
            let text = String::from_utf8_lossy(&text).to_string();
            let (seconds, micros) = text.split_once('.').unwrap_or((&text, "0"));
            let seconds: i64 = seconds.parse().map_err(|_| format!("timestamp `{text}`"))?;
            let micros: u32 = format!("{micros:0<6}")[..6]
                .parse()
                .map_err(|_| format!("timestamp `{text}`"))?;
            if seconds == 0 && micros == 0 {
                Value::Date(0, 0, 0, 0, 0, 0, 0) // MySQL's zero timestamp
            } else {
                utc(seconds, micros)?
            }
        }
        // The log has no year 0000: it says 1900, which no `year` column can hold.
        ("year", Value::Bytes(text)) if text == b"1900" => Value::Int(0),
        ("enum", Value::Int(n)) => enum_member(column, n)?,
        ("enum", Value::UInt(n)) => enum_member(column, n as i64)?,
        ("set", Value::Bytes(mask)) => {
            let members = members(&column.display);
            let bits = mask
                .iter()
                .rev()
                .fold(0u64, |n, byte| n << 8 | *byte as u64);
            let chosen: Vec<&str> = members
                .iter()
                .enumerate()
                .filter(|(i, _)| bits >> i & 1 == 1)
                .map(|(_, m)| m.as_str())
                .collect();
            Value::Bytes(chosen.join(",").into_bytes())
        }
        (_, Value::Bytes(bytes)) if column.charset.is_some() => Value::Bytes(utf8(column, bytes)?),
        ("binary", Value::Bytes(mut bytes)) => {
            if let Some(width) = width(&column.display) {
                bytes.resize(bytes.len().max(width), 0);
            }
            Value::Bytes(bytes)
        }
        (_, value) => value,
    })
}

/// Member `n` (from 1) of an `enum` column; 0 is the error value, an invalid member stored
/// as ''.
fn enum_member(column: &MyColumn, n: i64) -> Result<Value, String> {
    let text = match n {
        0 => String::new(),
        n => members(&column.display)
            .get(n as usize - 1)
            .cloned()
            .ok_or_else(|| format!("enum member {n} of {}", column.display))?,
    };
    Ok(Value::Bytes(text.into_bytes()))
}

/// A text column's bytes (in its character set, as the log keeps them) as UTF-8, as a full
/// load's `utf8mb4` session reads them. By hand: MySQL's `latin1` is Windows-1252, one table
/// of 32 characters, and no other character set is read.
fn utf8(column: &MyColumn, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let charset = column.charset.as_deref().unwrap_or_default();
    if charset.starts_with("utf8") || charset == "ascii" || charset == "binary" {
        return Ok(bytes);
    }
    if charset != "latin1" {
        return Err(format!(
            "text in character set {charset}, which change data capture does not read (utf8mb4, utf8mb3, latin1 and ascii it does): ALTER TABLE ... CONVERT TO CHARACTER SET utf8mb4 at the source"
        ));
    }
    /// Windows-1252's 0x80..0x9F; MySQL maps the five it leaves undefined to themselves.
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{81}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{8D}',
        '\u{017D}', '\u{8F}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}',
        '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}',
        '\u{9D}', '\u{017E}', '\u{0178}',
    ];
    Ok(bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9f => HIGH[(b - 0x80) as usize],
            b => b as char,
        })
        .collect::<String>()
        .into_bytes())
}

/// A `timestamp` read in UTC, as a full load's `+00:00` session reads it.
fn utc(seconds: i64, micros: u32) -> Result<Value, String> {
    let at = DateTime::from_timestamp(seconds, micros * 1000)
        .ok_or_else(|| format!("timestamp {seconds} out of range"))?;
    Ok(Value::Date(
        at.year() as u16,
        at.month() as u8,
        at.day() as u8,
        at.hour() as u8,
        at.minute() as u8,
        at.second() as u8,
        micros,
    ))
}

/// The members of `enum('a','b')` or `set('a','b')`, quotes undone (`''` is one quote).
fn members(display: &str) -> Vec<String> {
    let Some(inner) = display
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map(|(inner, _)| inner)
    else {
        return Vec::new();
    };
    let mut members = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut member = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    member.push('\'');
                }
                '\'' => break,
                '\\' => member.extend(chars.next()),
                c => member.push(c),
            }
        }
        members.push(member);
    }
    members
}

/// The `n` of `binary(n)`.
fn width(display: &str) -> Option<usize> {
    display
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(n, _)| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(data_type: &str, display: &str) -> MyColumn {
        MyColumn {
            name: "c".into(),
            data_type: data_type.into(),
            display: display.into(),
            precision: None,
            scale: None,
            fraction_digits: None,
            charset: None,
        }
    }

    fn value(v: Value) -> BinlogValue<'static> {
        BinlogValue::Value(v)
    }

    #[test]
    fn the_logs_short_forms_become_the_protocols_values() {
        let tiny = column("tinyint", "tinyint(3) unsigned");
        assert_eq!(
            normalize(&tiny, value(Value::Int(-1))),
            Ok(Value::UInt(255))
        );
        let big = column("bigint", "bigint(20) unsigned");
        assert_eq!(
            normalize(&big, value(Value::Int(-1))),
            Ok(Value::UInt(u64::MAX))
        );
        let medium = column("mediumint", "mediumint(9)");
        assert_eq!(
            normalize(&medium, value(Value::Int(0x80_0000))),
            Ok(Value::Int(-0x80_0000))
        );
        assert_eq!(
            normalize(&medium, value(Value::Int(0x7f_ffff))),
            Ok(Value::Int(0x7f_ffff))
        );
        let signed = column("int", "int(11)");
        assert_eq!(
            normalize(&signed, value(Value::Int(-1))),
            Ok(Value::Int(-1))
        );
        let stamp = column("timestamp", "timestamp(6)");
        assert_eq!(
            normalize(&stamp, value(Value::Bytes(b"86401.5".to_vec()))),
            Ok(Value::Date(1970, 1, 2, 0, 0, 1, 500_000))
        );
        let state = column("enum", "enum('new','it''s','done')");
        assert_eq!(
            normalize(&state, value(Value::Int(2))),
            Ok(Value::Bytes(b"it's".to_vec()))
        );
        let tags = column("set", "set('a','b','c')");
        assert_eq!(
            normalize(&tags, value(Value::Bytes(vec![0b101]))),
            Ok(Value::Bytes(b"a,c".to_vec()))
        );
        let fixed = column("binary", "binary(4)");
        assert_eq!(
            normalize(&fixed, value(Value::Bytes(vec![1, 2]))),
            Ok(Value::Bytes(vec![1, 2, 0, 0]))
        );
        assert_eq!(normalize(&fixed, value(Value::NULL)), Ok(Value::NULL));
        let latin = MyColumn {
            charset: Some("latin1".into()),
            ..column("varchar", "varchar(9)")
        };
        assert_eq!(
            normalize(&latin, value(Value::Bytes(vec![b'h', 0xe9, 0x80]))),
            Ok(Value::Bytes("hé€".as_bytes().to_vec()))
        );
    }
}
