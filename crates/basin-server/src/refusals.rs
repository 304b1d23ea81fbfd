//! How many refused requests the audit log records one by one each minute (`[server]
//! audit_refusals_per_minute`).
//!
//! Every refusal (a `401` or `403`) goes in the audit log, and a refusal needs no token: a
//! stranger sending requests with no secret, or a wrong one, or Postgres logins with a wrong
//! password, as fast as it can would write as many rows, each kept a year (`[maintenance]
//! keep_audit`). Past the bound in one minute, refusals of callers with no token (a token's
//! own are always recorded, under its name) are counted instead of recorded (`basin_limit_hits_total{limit=
//! "audit_refusals_per_minute"}`), and the count goes in the log as one entry once that
//! minute has ended (the next refusal, the server's minute tick, or its stop writes it).
//! `0` records none of them one by one: only the counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basin_service::Lakehouse;

/// The window the bound counts in.
const MINUTE: Duration = Duration::from_secs(60);

/// The refusals of one server.
pub(crate) struct Refusals {
    per_minute: u64,
    window: Mutex<Window>,
    /// Counts a limit hit, by the setting's name.
    hit: Arc<dyn Fn(&'static str) + Send + Sync>,
}

#[derive(Default)]
struct Window {
    started: Option<Instant>,
    recorded: u64,
    /// Refusals counted, not recorded.
    skipped: u64,
}

impl Refusals {
    pub(crate) fn new(per_minute: u64, hit: Arc<dyn Fn(&'static str) + Send + Sync>) -> Self {
        Self {
            per_minute,
            window: Mutex::default(),
            hit,
        }
    }

    /// Whether a refusal now is recorded on its own; and how many refusals of a minute that
    /// has ended were counted, not recorded (to record as one entry now).
    pub(crate) fn admit(&self, now: Instant) -> (bool, u64) {
        let mut window = self.window.lock().expect("refusals");
        let mut left = 0;
        if window
            .started
            .is_none_or(|at| now.duration_since(at) >= MINUTE)
        {
            left = window.skipped;
            *window = Window {
                started: Some(now),
                ..Window::default()
            };
        }
        if window.recorded < self.per_minute {
            window.recorded += 1;
            return (true, left);
        }
        window.skipped += 1;
        (self.hit)("audit_refusals_per_minute");
        (false, left)
    }

    /// The refusals counted, not recorded, in a minute that has ended by `now` (taken: the
    /// caller records them).
    pub(crate) fn ended(&self, now: Instant) -> u64 {
        let mut window = self.window.lock().expect("refusals");
        if window
            .started
            .is_some_and(|at| now.duration_since(at) >= MINUTE)
        {
            return std::mem::take(&mut *window).skipped;
        }
        0
    }

    /// Whether a refusal now goes in the audit log on its own (else it is counted), having
    /// recorded the count of a minute that has ended.
    pub(crate) async fn recorded(&self, lakehouse: &Lakehouse, door: &'static str) -> bool {
        let (recorded, left) = self.admit(Instant::now());
        self.record_count(lakehouse, door, left).await;
        recorded
    }

    /// Records `count` refusals that were counted, not recorded, as one entry.
    pub(crate) async fn record_count(&self, lakehouse: &Lakehouse, door: &'static str, count: u64) {
        if count == 0 {
            return;
        }
        let detail = format!(
            "{count} more requests were refused in a minute in which {} had been recorded \
             (`[server] audit_refusals_per_minute`)",
            self.per_minute
        );
        lakehouse
            .audit()
            .record_refused_secret(door, "refusals not recorded one by one", "counted", &detail)
            .await;
    }

    /// Records, every minute until the server stops, the refusals of a minute that ended
    /// with no refusal after it to record them.
    pub(crate) async fn tick(
        self: Arc<Self>,
        lakehouse: Lakehouse,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut every = tokio::time::interval(MINUTE);
        loop {
            let stopping = tokio::select! {
                _ = every.tick() => false,
                _ = stopped.changed() => true,
            };
            // At the stop, the minute so far too: its count would be lost with the process.
            let now = Instant::now() + if stopping { MINUTE } else { Duration::ZERO };
            let count = self.ended(now);
            self.record_count(&lakehouse, "api", count).await;
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn past_the_bound_a_minutes_refusals_are_counted_and_handed_back_once_it_ends() {
        let hits = Arc::new(AtomicU64::new(0));
        let counted = hits.clone();
        let refusals = Refusals::new(
            2,
            Arc::new(move |limit| {
                assert_eq!(limit, "audit_refusals_per_minute");
                counted.fetch_add(1, Ordering::Relaxed);
            }),
        );
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(refusals.admit(at(0)), (true, 0));
        assert_eq!(refusals.admit(at(1)), (true, 0));
        for s in 2..7 {
            assert_eq!(refusals.admit(at(s)), (false, 0));
        }
        assert_eq!(hits.load(Ordering::Relaxed), 5);
        // Not yet ended: nothing to hand back.
        assert_eq!(refusals.ended(at(59)), 0);
        // The next minute's first refusal is recorded, and hands back the five.
        assert_eq!(refusals.admit(at(61)), (true, 5));
        assert_eq!(refusals.admit(at(62)), (true, 0));
        assert_eq!(refusals.admit(at(63)), (false, 0));
        // With no refusal after it, the tick takes the count, once.
        assert_eq!(refusals.ended(at(121)), 1);
        assert_eq!(refusals.ended(at(122)), 0);
        assert_eq!(refusals.admit(at(123)), (true, 0));
    }
}
