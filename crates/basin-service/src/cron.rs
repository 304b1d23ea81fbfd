//! Cron schedules as functions and maintenance declare them: the expression, its time
//! zone and what to do about missed slots; the slots that fall due.

use std::str::FromStr;

use basin_core::{Error, Result};
use chrono::TimeZone;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed `@basin.schedule`.
pub struct Schedule {
    pub(crate) cron: Cron,
    pub(crate) tz: chrono_tz::Tz,
    pub(crate) run_missed_once: bool,
}

impl Schedule {
    /// Parses a cron expression (five fields, or six with seconds first) in time zone `tz`.
    pub fn parse(cron: &str, tz: &str, missed: &str) -> Result<Self> {
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| {
                Error::invalid(format!("`{cron}` is not a cron expression: {e}")).with_hint(
                    "give five fields (minute hour day-of-month month day-of-week), e.g. \"*/5 * * * *\"",
                )
            })?;
        let tz = chrono_tz::Tz::from_str(tz).map_err(|_| {
            Error::invalid(format!("`{tz}` is not a time zone"))
                .with_hint("use an IANA name like \"UTC\" or \"Europe/Paris\"")
        })?;
        let run_missed_once = match missed {
            "skip" => false,
            "run_once" => true,
            other => {
                return Err(
                    Error::invalid(format!("missed=\"{other}\" is not a policy"))
                        .with_hint("use missed=\"skip\" or missed=\"run_once\""),
                );
            }
        };
        Ok(Self {
            cron: parsed,
            tz,
            run_missed_once,
        })
    }

    /// The first slot strictly after `after_ms`, as Unix milliseconds.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        // Slots are whole seconds: the search starts from the second `after_ms` is in.
        let after = self
            .tz
            .timestamp_millis_opt(after_ms.div_euclid(1000) * 1000)
            .single()?;
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        Some(next.timestamp_millis())
    }

    /// The slots in `(last_ms, now_ms]`, oldest first, at most `limit` of them.
    pub(crate) fn due(&self, last_ms: i64, now_ms: i64, limit: usize) -> (Vec<i64>, bool) {
        let mut slots = Vec::new();
        let mut at = last_ms;
        while let Some(next) = self.next_after(at).filter(|n| *n <= now_ms) {
            if slots.len() == limit {
                return (slots, true);
            }
            slots.push(next);
            at = next;
        }
        (slots, false)
    }

    pub(crate) fn local(&self, ms: i64) -> String {
        self.tz
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    }
}
