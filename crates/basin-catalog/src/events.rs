//! The event queue: what triggered functions are asked to handle, kept in the catalog store
//! so that an event is durable before it is acknowledged, and so that a commit can consume
//! events in the same transaction that moves the branch (exactly-once appends).

use serde::{Deserialize, Serialize};

/// Output kept per event: the tail, where errors are.
const MAX_LOGS: usize = 64 * 1024;

/// The last [`MAX_LOGS`] bytes of an attempt's output (cut at a character boundary).
pub(crate) fn tail(logs: &str) -> &str {
    if logs.len() <= MAX_LOGS {
        return logs;
    }
    let mut start = logs.len() - MAX_LOGS;
    while !logs.is_char_boundary(start) {
        start += 1;
    }
    &logs[start..]
}

/// Where an event is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    /// Stored, waiting for a worker.
    Pending,
    /// Leased to a worker until `lease_until_ms`; after that anyone may take it again.
    Running,
    Succeeded,
    /// Its last attempt failed; it runs again at `next_at_ms`.
    Failed,
    /// Failed `max_attempts` times; only `basin events retry` brings it back.
    Dead,
}

impl EventState {
    pub const ALL: [EventState; 5] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// A state a user gave (`--state`, `?state=`), or an error listing the states.
    pub fn from_user(s: &str) -> basin_core::Result<Self> {
        Self::parse(s).ok_or_else(|| {
            basin_core::Error::invalid(format!("`{s}` is not an event state"))
                .with_hint("use pending, running, succeeded, failed or dead")
        })
    }
}

/// An event to store. Its id is chosen by the source so that seeing the same thing twice
/// (a file found by the start-up scan and by the watcher) stores it once.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub id: String,
    pub function: String,
    pub payload: serde_json::Value,
    pub max_attempts: u32,
}

/// A synchronous call that already ran, to be stored settled (see
/// [`crate::Queue::record_call`]): its event, attempted once, how that attempt ended, and the
/// metering of the invocations it took (one, or none when it failed before one started).
#[derive(Clone, Debug)]
pub struct RanCall {
    pub event: NewEvent,
    /// The node that ran it, as `claim_events` records one.
    pub node: String,
    /// When the call arrived.
    pub created_at_ms: i64,
    pub outcome: EventOutcome,
    pub invocations: Vec<basin_core::InvocationRecord>,
}

impl RanCall {
    /// The event as the store keeps it once [`crate::Queue::record_call`] stored it.
    pub fn settled(&self) -> EventRecord {
        let (state, error, logs, result, next_at_ms) = match &self.outcome {
            EventOutcome::Succeeded { logs, result } => {
                (EventState::Succeeded, None, logs, result.clone(), None)
            }
            EventOutcome::Failed {
                error,
                logs,
                retry_at_ms,
            } => {
                let state = match retry_at_ms {
                    Some(_) => EventState::Failed,
                    None => EventState::Dead,
                };
                (state, Some(error.clone()), logs, None, *retry_at_ms)
            }
        };
        let now = basin_core::time::now_ms();
        EventRecord {
            state,
            updated_at_ms: now,
            next_at_ms: next_at_ms.unwrap_or(now),
            lease_until_ms: None,
            error,
            logs: tail(logs).to_string(),
            result,
            ..self.event.claimed(&self.node, self.created_at_ms)
        }
    }
}

impl NewEvent {
    /// The event as its first claim leaves it, by `node` at `now_ms` (with no lease: a
    /// synchronous call run at once is in no queue).
    pub fn claimed(&self, node: &str, now_ms: i64) -> EventRecord {
        EventRecord {
            id: self.id.clone(),
            function: self.function.clone(),
            state: EventState::Running,
            payload: self.payload.clone(),
            attempts: 1,
            max_attempts: self.max_attempts.max(1),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            next_at_ms: now_ms,
            lease_until_ms: None,
            error: None,
            logs: String::new(),
            commit: None,
            result: None,
            node: Some(node.to_string()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    pub function: String,
    pub state: EventState,
    pub payload: serde_json::Value,
    pub attempts: u32,
    pub max_attempts: u32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// When a pending or failed event may run (backoff).
    pub next_at_ms: i64,
    pub lease_until_ms: Option<i64>,
    /// The last attempt's error.
    pub error: Option<String>,
    /// The last attempt's output lines.
    pub logs: String,
    /// The commit that stored this event's output, for functions with `to=`.
    pub commit: Option<String>,
    /// A function's JSON result, for functions without `to=`.
    pub result: Option<serde_json::Value>,
    /// The node that claimed it last (`basin worker` or `basin serve`, see
    /// `claim_events`).
    pub node: Option<String>,
}

/// How one attempt of one event ended, for [`crate::Store::finish_events`].
#[derive(Clone, Debug)]
pub struct Settled {
    pub id: String,
    /// The event's `attempts` when it was claimed.
    pub attempt: u32,
    pub outcome: EventOutcome,
}

/// How an attempt ended.
#[derive(Clone, Debug)]
pub enum EventOutcome {
    Succeeded {
        logs: String,
        result: Option<serde_json::Value>,
    },
    /// Failed; runs again at `retry_at_ms`, or is dead when that is `None`.
    Failed {
        error: String,
        logs: String,
        retry_at_ms: Option<i64>,
    },
}

/// A function's queue as the dispatcher sees it at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DueEvents {
    /// Events that may run now (pending or failed and due, or running with a lapsed lease).
    pub count: u64,
    /// When the oldest of them was stored.
    pub oldest_created_ms: Option<i64>,
    /// When the next one becomes due: a backoff ending, or a lease running out.
    pub next_at_ms: Option<i64>,
}

/// Which events `basin events ls` shows.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub state: Option<EventState>,
    pub function: Option<String>,
    pub limit: usize,
}

/// How many events are in each state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    pub pending: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
}

impl EventCounts {
    /// Sets the count of the state a store names `state` (unknown states are not counted).
    pub(crate) fn set(&mut self, state: &str, n: u64) {
        match EventState::parse(state) {
            Some(EventState::Pending) => self.pending = n,
            Some(EventState::Running) => self.running = n,
            Some(EventState::Succeeded) => self.succeeded = n,
            Some(EventState::Failed) => self.failed = n,
            Some(EventState::Dead) => self.dead = n,
            None => {}
        }
    }
}

/// What a prune of settled events did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsPruned {
    /// Succeeded events nothing can deliver again (HTTP calls, schedule slots): deleted.
    pub removed: u64,
    /// Succeeded object events: their logs and result dropped, the row kept, because it is
    /// what stops a bucket's next scan (or a late notification) from delivering the object
    /// again.
    pub slimmed: u64,
}

/// Function names as other nodes queue their events; see [`crate::PgStore::listen`].
pub struct EventWakeups {
    listener: sqlx::postgres::PgListener,
}

impl EventWakeups {
    pub(crate) fn new(listener: sqlx::postgres::PgListener) -> Self {
        Self { listener }
    }

    /// Waits for the next wake-up and returns the function it is for. Reconnects by itself
    /// when the connection drops (wake-ups sent meanwhile are lost).
    pub async fn recv(&mut self) -> basin_core::Result<String> {
        Ok(self.listener.recv().await?.payload().to_string())
    }
}

impl std::fmt::Debug for EventWakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWakeups").finish()
    }
}
