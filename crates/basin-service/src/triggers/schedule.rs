//! Schedules: `@basin.schedule(cron, tz=..., missed=...)`. The scheduler turns each slot
//! into an event whose id is the function and the slot, so a slot is queued once even if
//! the server restarts around it, and keeps the last slot it handled per function in the
//! catalog. Slots that passed while the server was down are skipped, or run once with
//! `missed="run_once"`. A function deployed while the server runs is picked up within a
//! minute; a first start fires nothing for the past.

use crate::cron::Schedule;
use basin_core::time::now_ms;
use std::time::Duration;

use basin_catalog::NewEvent;
use basin_core::Result;
use basin_runtime::Trigger;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::Lakehouse;
use crate::deployed::DeployedFunction;
use crate::dispatch::Dispatcher;

/// A slot this late when the scheduler sees it counts as missed (the server was down).
pub const GRACE: Duration = Duration::from_secs(3);
/// How often the scheduler looks for newly deployed schedules when no slot is sooner.
const RESCAN: Duration = Duration::from_secs(60);

/// What one look at a schedule decides: the slot to fire (if any) and how many slots it
/// stands for that were missed, and the new last slot.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    pub fire: Option<i64>,
    pub missed: usize,
    pub last_ms: i64,
}

/// Decides what to fire at `now_ms` given the last slot handled. The newest due slot fires
/// if it is on time (less than `GRACE` late); slots older than that were missed while the
/// server was down: skipped, or with `run_once` stood for by one firing of the newest.
pub fn decide(schedule: &Schedule, last_ms: i64, now_ms: i64) -> Decision {
    // Far more than any real backlog; bounds the work after a long outage of a
    // per-second schedule.
    let (slots, more) = schedule.due(last_ms, now_ms, 100_000);
    let Some(&newest) = slots.last() else {
        return Decision {
            fire: None,
            missed: 0,
            last_ms,
        };
    };
    let on_time = !more && now_ms - newest < GRACE.as_millis() as i64;
    let missed = slots.len() - usize::from(on_time) + usize::from(more);
    let fire = (on_time || (schedule.run_missed_once && missed > 0)).then_some(newest);
    Decision {
        fire,
        missed,
        last_ms: if more { now_ms } else { newest },
    }
}

/// Fires due slots until `stop` turns true.
pub async fn run(lakehouse: Lakehouse, dispatcher: Dispatcher, stop: watch::Receiver<bool>) {
    super::repeat("the scheduler", stop, || tick(&lakehouse, &dispatcher)).await
}

/// Queues an event for each schedule with a slot due; returns how long until the next slot
/// (or the next look for new schedules).
async fn tick(lakehouse: &Lakehouse, dispatcher: &Dispatcher) -> Result<Duration> {
    let store = lakehouse.catalog().store();
    let now = now_ms();
    let mut next = now + RESCAN.as_millis() as i64;
    let mut queued = false;
    for function in lakehouse.deployed().list().await? {
        let Some(Trigger::Schedule { cron, tz, missed }) = function.trigger() else {
            continue;
        };
        let schedule = match Schedule::parse(cron, tz, missed) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(function = function.name, "not scheduled: {e}");
                continue;
            }
        };
        let cursor = format!("schedule:{}", function.name);
        let last = match store.cursor(&cursor).await? {
            Some(last) => last,
            None => {
                // First seen: the schedule starts now; nothing in the past fires.
                store.set_cursor(&cursor, now).await?;
                now
            }
        };
        let decision = decide(&schedule, last, now);
        if let Some(slot) = decision.fire {
            let event = slot_event(&function, &schedule, slot, decision.missed);
            store.enqueue_events(&[event]).await?;
            queued = true;
        }
        if decision.last_ms != last {
            store.set_cursor(&cursor, decision.last_ms).await?;
        }
        if let Some(at) = schedule.next_after(decision.last_ms.max(now)) {
            next = next.min(at);
        }
    }
    if queued {
        dispatcher.wake();
    }
    Ok(Duration::from_millis((next - now_ms()).max(0) as u64))
}

/// The event for one slot; its id is the function and the slot, so queueing it twice
/// stores it once.
fn slot_event(
    function: &DeployedFunction,
    schedule: &Schedule,
    slot: i64,
    missed: usize,
) -> NewEvent {
    NewEvent {
        id: crate::queue::event_id(&[&function.name, "schedule", &slot.to_string()]),
        function: function.name.clone(),
        payload: serde_json::json!({
            "type": "schedule",
            "cron": schedule.cron.pattern.to_string(),
            "tz": schedule.tz.name(),
            "scheduled_at": schedule.local(slot),
            "slot_ms": slot,
            "fired_at": DateTime::<Utc>::from(std::time::SystemTime::now()).to_rfc3339(),
            "missed": missed,
            "source": "schedule",
        }),
        max_attempts: function.declaration.max_attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn slots_follow_the_time_zone() {
        // 09:00 in Paris is 08:00 UTC in winter.
        let s = Schedule::parse("0 9 * * *", "Europe/Paris", "skip").unwrap();
        let next = s.next_after(at("2026-11-22T12:00:00.250Z")).unwrap();
        assert_eq!(next, at("2026-11-23T08:00:00Z"));
        let every_second = Schedule::parse("* * * * * *", "UTC", "skip").unwrap();
        let next = every_second.next_after(at("2026-11-22T12:00:00.250Z"));
        assert_eq!(next, Some(at("2026-11-22T12:00:01Z")));
        assert!(Schedule::parse("0 9 * *", "UTC", "skip").is_err());
        assert!(Schedule::parse("0 9 * * *", "Mars/Olympus", "skip").is_err());
        assert!(Schedule::parse("0 9 * * *", "UTC", "twice").is_err());
    }

    #[test]
    fn an_on_time_slot_fires_and_missed_ones_follow_the_policy() {
        let skip = Schedule::parse("*/10 * * * * *", "UTC", "skip").unwrap();
        let once = Schedule::parse("*/10 * * * * *", "UTC", "run_once").unwrap();
        let last = at("2026-11-22T10:00:00Z");
        // On time: the 10:00:10 slot, 1 s late.
        let now = at("2026-11-22T10:00:11Z");
        let fired = Decision {
            fire: Some(at("2026-11-22T10:00:10Z")),
            missed: 0,
            last_ms: at("2026-11-22T10:00:10Z"),
        };
        assert_eq!(decide(&skip, last, now), fired);
        assert_eq!(decide(&once, last, now), fired);
        // Nothing due yet.
        let early = decide(&skip, last, at("2026-11-22T10:00:09Z"));
        assert_eq!((early.fire, early.last_ms), (None, last));
        // Down from 10:00:05 to 10:00:36: slots 10, 20 and 30 were missed (30 is 6 s late).
        let now = at("2026-11-22T10:00:36Z");
        let newest = at("2026-11-22T10:00:30Z");
        assert_eq!(
            decide(&skip, last, now),
            Decision {
                fire: None,
                missed: 3,
                last_ms: newest
            }
        );
        assert_eq!(
            decide(&once, last, now),
            Decision {
                fire: Some(newest),
                missed: 3,
                last_ms: newest
            }
        );
        // Down until just after a slot: it fires on time; the two before were missed.
        let now = at("2026-11-22T10:00:31Z");
        assert_eq!(decide(&skip, last, now).fire, Some(newest));
        assert_eq!(decide(&skip, last, now).missed, 2);
    }
}
