//! The dispatcher `basin serve` runs: it leases due events from the queue in batches, runs
//! each batch in one invocation (one process calls the handler once per event, like a warm
//! Lambda container), batches of a function in parallel up to its concurrency, and settles
//! each event: a
//! function with `to=` appends its results in one commit per batch that consumes the
//! batch's events (so a retried event never appends twice); a failure backs off, and the
//! last allowed failure dead-letters the event.
//!
//! It sleeps between events: it wakes when a source stores one, when a backoff or a lease
//! runs out, or when a batch finishes. No events, no work.

use crate::queue::Background;
use basin_core::time::now_ms;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basin_catalog::{EventOutcome, EventRecord, EventState};
use basin_core::Result;
use tokio::sync::{Notify, watch};

use crate::Lakehouse;
use crate::deployed::DeployedFunction;

mod attempt;
mod invoke;
mod now;
mod settle;

/// A triggered function's time limit when it declares none.
pub const DEFAULT_EVENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Batches of one function in flight when it declares no concurrency.
const DEFAULT_CONCURRENCY: usize = 4;
/// On a shared catalog: how often an idle dispatcher looks for events other processes
/// queued, and how often when the store wakes it for them (a wake-up sent while its
/// connection was down is lost).
const SHARED_POLL: Duration = Duration::from_secs(1);
const LISTENING_POLL: Duration = Duration::from_secs(5);
/// On a shared catalog: how often a caller waiting on an event looks at it.
const SETTLED_POLL: Duration = Duration::from_millis(100);
/// A batch's time limit past the sum of its calls' limits: the worker's start and its commit.
const BATCH_MARGIN: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Dispatcher {
    lakehouse: Lakehouse,
    wake: Arc<Notify>,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    /// Counts settled batches, for callers waiting on an event (`settled`).
    settled: Arc<watch::Sender<u64>>,
    /// Whether other processes queue and settle events too (a shared catalog, or a `basin
    /// worker` beside a `basin serve`): then the queue is looked at now and then, not only
    /// when this process wakes the dispatcher.
    shared: bool,
    /// This process's name in the events it claims (`basin events ls` shows it).
    node: Arc<str>,
    counters: Arc<EventCounters>,
    /// The queues of pipeline runs in progress (`crate::pipeline::dispatch`) and when they
    /// were last read from the run records: read again when another node queues a model (the
    /// store says so) or after `SHARED_POLL`, not on every pass.
    model_queues: Arc<Mutex<(Option<std::time::Instant>, Vec<String>)>>,
    /// Whether this process runs events (`run` started): only then does it run synchronous
    /// calls at once (`basin serve --queue-only` leaves them to the workers).
    runs_events: Arc<AtomicBool>,
    /// The dispatcher left due events for want of a place: the next place given back wakes
    /// it (see [`Slot`]).
    starved: Arc<AtomicBool>,
}

/// What this process's dispatcher has done since it started, for `/metrics`.
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Events leased from the queue (a retry, or an event taken over from a lost node, counts
    /// again).
    pub claimed: AtomicU64,
    /// Events settled as succeeded.
    pub succeeded: AtomicU64,
    /// Events settled as failed: to be retried, or dead.
    pub failed: AtomicU64,
    /// Batches run (one invocation each).
    pub batches: AtomicU64,
    /// Synchronous calls run at once, without the queue (`dispatch::now`); each is also a
    /// claimed event and a batch.
    pub calls_at_once: AtomicU64,
}

impl EventCounters {
    fn settled<'a>(&self, outcomes: impl IntoIterator<Item = &'a EventOutcome>) {
        for outcome in outcomes {
            let counter = match outcome {
                EventOutcome::Succeeded { .. } => &self.succeeded,
                EventOutcome::Failed { .. } => &self.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Dispatcher {
    pub fn new(lakehouse: Lakehouse) -> Self {
        Self {
            shared: lakehouse.is_shared(),
            node: crate::queue::node_name().into(),
            lakehouse,
            wake: Arc::new(Notify::new()),
            in_flight: Arc::default(),
            settled: Arc::new(watch::Sender::new(0)),
            counters: Arc::default(),
            model_queues: Arc::default(),
            runs_events: Arc::default(),
            starved: Arc::default(),
        }
    }

    /// What this dispatcher has done since it started.
    pub fn counters(&self) -> &EventCounters {
        &self.counters
    }

    /// A dispatcher in a process that queues no events itself (`basin worker`).
    pub fn for_worker(lakehouse: Lakehouse) -> Self {
        Self {
            shared: true,
            ..Self::new(lakehouse)
        }
    }

    /// Waits until event `id` succeeded, or failed or died, for at most `limit`; `None` if
    /// it is still pending or running then.
    pub async fn settled(&self, id: &str, limit: Duration) -> Result<Option<EventRecord>> {
        let mut changes = self.settled.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let event = self.lakehouse.queue().event(id).await?;
            if !matches!(event.state, EventState::Pending | EventState::Running) {
                return Ok(Some(event));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            // On a shared catalog another node may settle it: look again now and then.
            let until = match self.shared {
                true => deadline.min(tokio::time::Instant::now() + SETTLED_POLL),
                false => deadline,
            };
            let _ = tokio::time::timeout_at(until, changes.changed()).await;
        }
    }

    pub fn lakehouse(&self) -> &Lakehouse {
        &self.lakehouse
    }

    /// Tells the dispatcher new events are stored.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Dispatches until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        self.runs_events.store(true, Ordering::Relaxed);
        let listening = match self.shared {
            true => self.follow_other_nodes().await,
            false => None,
        };
        // Other processes queue events too: the queue is looked at now and then even when
        // nothing wakes the dispatcher; seldom when the store says when they do.
        let poll = match listening {
            Some(_) => LISTENING_POLL,
            None => SHARED_POLL,
        };
        loop {
            if *stop.borrow() {
                return;
            }
            let sleep = match self.dispatch_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!("the event dispatcher failed, retrying in 5s: {e}");
                    Some(Duration::from_secs(5))
                }
            };
            let sleep = match self.shared {
                true => Some(sleep.map_or(poll, |d| d.min(poll))),
                false => sleep,
            };
            let timer = async {
                match sleep {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = timer => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Wakes the dispatcher whenever another node queues or retries events, where the store
    /// tells (Postgres: LISTEN); `None` where it cannot. Stops with the returned guard.
    async fn follow_other_nodes(&self) -> Option<Background> {
        let store = self.lakehouse.catalog().store().clone();
        let mut wakeups = match store.event_wakeups().await {
            Ok(Some(wakeups)) => wakeups,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!("cannot listen for other nodes' events, polling instead: {e}");
                return None;
            }
        };
        let this = self.clone();
        Some(Background(tokio::spawn(async move {
            loop {
                match wakeups.recv().await {
                    Ok(function) => {
                        if function.starts_with(crate::pipeline::QUEUE_PREFIX) {
                            this.model_queues.lock().expect("not poisoned").0 = None;
                        }
                        this.wake()
                    }
                    Err(e) => {
                        tracing::warn!("listening for other nodes' events: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })))
    }

    /// Starts batches for every function with due events and free slots; returns how long
    /// until the next event becomes due (a backoff or a lease ending, or a batch window
    /// closing). A function with no free slot is left alone: its next batch to finish wakes
    /// the dispatcher.
    async fn dispatch_due(&self) -> Result<Option<Duration>> {
        let store = self.lakehouse.catalog().store().clone();
        let mut next: Option<i64> = None;
        for function in self.lakehouse.deployed().list().await? {
            let declaration = &function.declaration;
            let limit = declaration.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
            let batch_size = declaration.batch_size.max(1);
            loop {
                let Some(slot) = self.try_slot(&function.name, limit) else {
                    break;
                };
                let now = now_ms();
                let due = store.due_events(&function.name, now).await?;
                if due.count == 0 {
                    next = earliest(next, due.next_at_ms);
                    break;
                }
                // A part batch waits for more events, up to the window after its oldest.
                let window = (declaration.batch_window_seconds * 1000.0) as i64;
                if let Some(oldest) = due.oldest_created_ms.filter(|_| window > 0) {
                    let closes = oldest + window;
                    if (due.count as usize) < batch_size && closes > now {
                        next = earliest(next, Some(closes));
                        break;
                    }
                }
                let batch = store
                    .claim_events(
                        &function.name,
                        batch_size,
                        now,
                        now + self.lease().as_millis() as i64,
                        &self.node,
                    )
                    .await?;
                if batch.is_empty() {
                    break;
                }
                self.counters
                    .claimed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.start(slot, function.clone(), batch);
            }
        }
        // Models of pipeline runs started on other nodes (crate::pipeline::dispatch).
        if self.lakehouse.is_shared() {
            for queue in self.model_queues().await? {
                while let Some(slot) = self.try_slot(&queue, usize::MAX) {
                    let now = now_ms();
                    let until = now + self.lease().as_millis() as i64;
                    let claimed = store
                        .claim_events(&queue, 1, now, until, &self.node)
                        .await?;
                    let Some(event) = claimed.into_iter().next() else {
                        break;
                    };
                    self.counters.claimed.fetch_add(1, Ordering::Relaxed);
                    self.start_model(slot, event);
                }
            }
        }
        Ok(next.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64 + 5)))
    }

    /// The queues of pipeline runs in progress, read again when stale (see `model_queues`).
    async fn model_queues(&self) -> Result<Vec<String>> {
        {
            let (read, queues) = &*self.model_queues.lock().expect("not poisoned");
            if read.is_some_and(|at| at.elapsed() < SHARED_POLL) {
                return Ok(queues.clone());
            }
        }
        let queues = crate::pipeline::running_queues(&self.lakehouse).await?;
        *self.model_queues.lock().expect("not poisoned") =
            (Some(std::time::Instant::now()), queues.clone());
        Ok(queues)
    }

    /// Waits until no batch runs, for at most `limit`; false if some still do then.
    pub async fn finish(&self, limit: Duration) -> bool {
        let mut changes = self.settled.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        while self.running() > 0 {
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// How long a claimed event stays leased unless renewed (`[functions] event_lease`): the
    /// dispatcher renews the leases of the events it works on every third of this, so a dead
    /// node's events return this soon.
    fn lease(&self) -> Duration {
        self.lakehouse.settings().event_lease
    }

    /// Batches running now.
    pub fn running(&self) -> usize {
        self.in_flight.lock().expect("not poisoned").values().sum()
    }

    /// A place for one more batch of `queue`, if it has fewer than `limit` running and the
    /// node fewer than `[runtime] max_concurrency`.
    fn try_slot(&self, queue: &str, limit: usize) -> Option<Slot> {
        let global = self.lakehouse.settings().runtime.max_concurrency.max(1);
        let mut in_flight = self.in_flight.lock().expect("not poisoned");
        let busy = in_flight.get(queue).copied().unwrap_or(0);
        if busy >= limit || in_flight.values().sum::<usize>() >= global {
            self.starved.store(true, Ordering::Relaxed);
            return None;
        }
        *in_flight.entry(queue.to_string()).or_default() += 1;
        Some(Slot {
            dispatcher: self.clone(),
            queue: queue.to_string(),
            used: false,
            wakes: false,
        })
    }

    fn start(&self, slot: Slot, function: DeployedFunction, batch: Vec<EventRecord>) {
        let this = self.clone();
        tokio::spawn(async move {
            let _slot = slot.used();
            let name = function.name.clone();
            this.counters.batches.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = this.handle(function, batch).await {
                tracing::error!(function = name, "a batch of events failed: {e}");
            }
        });
    }

    /// Runs a model of a pipeline run (`crate::pipeline::dispatch`), counted as a batch of
    /// its run's queue.
    fn start_model(&self, slot: Slot, event: EventRecord) {
        let this = self.clone();
        tokio::spawn(async move {
            let _slot = slot.used();
            this.counters.batches.fetch_add(1, Ordering::Relaxed);
            crate::pipeline::work_on(&this.lakehouse, event).await;
        });
    }
}

/// One running batch's place (see [`Dispatcher::try_slot`]), given back when dropped. A
/// place that was used then tells those waiting on settled events. A batch's place also wakes
/// the dispatcher (its function may have more events due); a synchronous call's place
/// (`dispatch/now.rs`) only when the dispatcher left events for want of a place.
struct Slot {
    dispatcher: Dispatcher,
    queue: String,
    used: bool,
    wakes: bool,
}

impl Slot {
    /// Taken by a batch.
    fn used(mut self) -> Self {
        self.used = true;
        self.wakes = true;
        self
    }

    /// Taken by a synchronous call.
    fn used_at_once(mut self) -> Self {
        self.used = true;
        self
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let dispatcher = &self.dispatcher;
        if let Some(n) = dispatcher
            .in_flight
            .lock()
            .expect("not poisoned")
            .get_mut(&self.queue)
        {
            *n -= 1;
        }
        if !self.used {
            return;
        }
        dispatcher.settled.send_modify(|n| *n += 1);
        if self.wakes || dispatcher.starved.swap(false, Ordering::Relaxed) {
            dispatcher.wake();
        }
    }
}

pub(crate) fn timeout(function: &DeployedFunction) -> Duration {
    function
        .declaration
        .timeout_seconds
        .map_or(DEFAULT_EVENT_TIMEOUT, Duration::from_secs_f64)
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
