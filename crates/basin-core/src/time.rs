//! The clock as Basin records it: milliseconds since the Unix epoch, UTC.

/// Now, in milliseconds since the Unix epoch: what every record's `*_at_ms` holds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
