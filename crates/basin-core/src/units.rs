//! Sizes and durations as people write them in flags, decorators and `basin.toml`
//! (`512MiB`, `2GiB`, `30s`, `5m`), read in one place.

use std::time::Duration;

use crate::error::{Error, Result};

/// `"1.5 GiB"` as `("1.5", " GiB")`.
fn number_and_unit(text: &str) -> (&str, &str) {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    t.split_at(split)
}

/// `512MiB`, `2GiB`, `1GB`, or a number of bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let (number, unit) = number_and_unit(text);
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => f64::NAN,
    };
    number
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|b| b.is_finite() && *b >= 1.0)
        .map(|b| b as u64)
        .ok_or_else(|| {
            Error::invalid(format!("`{text}` is not a size")).with_hint("write e.g. 512MiB or 2GiB")
        })
}

/// `30s`, `5m`, `1h`, `7d`, `250ms`, or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let (number, unit) = number_and_unit(text);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => f64::NAN,
    };
    number
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|s| *s > 0.0)
        // Past u64::MAX seconds (`99999999999999999999h`) is no duration either.
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| {
            Error::invalid(format!("`{text}` is not a duration"))
                .with_hint("write e.g. 30s, 5m, 1h or 7d")
        })
}

/// A duration as `parse_duration` reads it, in the largest unit that divides it: `7d`,
/// `36h`, `90s`, `250ms`.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Bytes for people: `1.5 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err() && parse_size("0").is_err());
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err() && parse_duration("0s").is_err());
        assert!(
            parse_duration("99999999999999999999h").is_err(),
            "too long, not a panic"
        );
        assert_eq!(format_size(512 << 20), "512 MiB");
        assert_eq!(format_size(1536 << 20), "1.5 GiB");
        assert_eq!(format_size(10), "10 B");
    }
}
