//! The event queue the dispatcher claims from, the deployed functions it runs, and the
//! cursors of the trigger sources that feed it.

use async_trait::async_trait;

use crate::events::{
    DueEvents, EventCounts, EventFilter, EventOutcome, EventRecord, EventWakeups, EventsPruned,
    NewEvent, RanCall, Settled,
};
use basin_core::Result;

#[async_trait]
pub trait Queue: Send + Sync {
    /// Stores events not stored yet (by id); returns how many were new.
    async fn enqueue_events(&self, events: &[NewEvent]) -> Result<usize>;

    /// Leases up to `limit` due events of `function` until `lease_until_ms` to `node` (a
    /// name for the process claiming them, recorded with each event).
    async fn claim_events(
        &self,
        function: &str,
        limit: usize,
        now_ms: i64,
        lease_until_ms: i64,
        node: &str,
    ) -> Result<Vec<EventRecord>>;

    /// Wake-ups when any node queues or retries events (the function's name), where the
    /// store can tell (Postgres: LISTEN); `None`: only this process's own.
    async fn event_wakeups(&self) -> Result<Option<EventWakeups>> {
        Ok(None)
    }

    /// Moves the leases of the running events among `ids` to `lease_until_ms`: the dispatcher
    /// still works on them.
    async fn renew_leases(&self, ids: &[String], lease_until_ms: i64) -> Result<()>;

    /// Records how attempt `attempt` (the event's `attempts` when it was claimed) ended. An
    /// outcome from an older attempt is dropped: after a lease ran out and another worker
    /// took the event, only that newer attempt may settle it.
    async fn finish_event(&self, id: &str, attempt: u32, outcome: &EventOutcome) -> Result<()> {
        let settled = Settled {
            id: id.to_string(),
            attempt,
            outcome: outcome.clone(),
        };
        self.finish_events(std::slice::from_ref(&settled)).await
    }

    /// Records how several attempts ended (each as [`Queue::finish_event`] would), in one
    /// transaction: a batch's events settle with one flush of the log, not one each.
    async fn finish_events(&self, settled: &[Settled]) -> Result<()>;

    /// Stores a synchronous call that already ran (`basin serve` answering `POST /fn/NAME`
    /// in the request): its event, settled, and its invocations' metering, in one transaction.
    /// The caller has its answer, so the transaction does not wait for the disk (SQLite:
    /// `synchronous = NORMAL` on a connection of its own; Postgres: `synchronous_commit =
    /// off`): once this returns other processes see it, and a crash of the process loses
    /// nothing, but a crash of the machine may lose the last few such records. Every other
    /// write (an event queued before it runs, a commit) still waits for the disk.
    async fn record_call(&self, call: &RanCall) -> Result<()>;

    /// How many of `function`'s events may run at `now_ms`, and when the next one may.
    async fn due_events(&self, function: &str, now_ms: i64) -> Result<DueEvents>;

    /// Newest first.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>>;

    async fn event_counts(&self, function: Option<&str>) -> Result<EventCounts>;

    /// Events whose id starts with `prefix` (at most 2).
    async fn events_with_prefix(&self, prefix: &str) -> Result<Vec<EventRecord>>;

    /// Makes failed or dead events pending again (`None`: every dead one).
    async fn retry_events(&self, ids: Option<&[String]>) -> Result<usize>;

    /// Prunes the events that succeeded before `before_ms` (see [`EventsPruned`]); failed,
    /// dead, pending and running events stay.
    async fn prune_events(&self, before_ms: i64, dry_run: bool) -> Result<EventsPruned>;

    /// Saves (or replaces) a deployed function's record, a JSON document owned by the service.
    async fn save_function(&self, name: &str, record: &str) -> Result<()>;

    /// Where trigger source `name` got to (`schedule:FUNCTION`: its last slot;
    /// `s3:BUCKET`: its listing watermark), in Unix milliseconds.
    async fn cursor(&self, name: &str) -> Result<Option<i64>>;

    async fn set_cursor(&self, name: &str, value: i64) -> Result<()>;

    async fn functions(&self) -> Result<Vec<String>>;

    /// Fails with `NotFound` if there is no such function.
    async fn delete_function(&self, name: &str) -> Result<()>;
}
