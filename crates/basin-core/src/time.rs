//! The clock as Basin records it: milliseconds since the Unix epoch, UTC.

/// Now, in milliseconds since the Unix epoch: what every record's `*_at_ms` holds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `ms` as people read it: `2026-11-28 02:59:01` (UTC); empty past chrono's range.
pub fn shown(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}
