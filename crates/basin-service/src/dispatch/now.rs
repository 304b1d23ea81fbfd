//! Synchronous calls run at once. `basin serve` answers `POST /fn/NAME` by running the
//! handler in one of the function's places (its `concurrency`, within the node's `[runtime]
//! max_concurrency`), as a warm Lambda answers a synchronous invoke, and stores the call
//! afterwards, settled, in one transaction that does not wait for the disk
//! ([`basin_catalog::Queue::record_call`]): the caller, not the queue, retries a synchronous
//! call. A call goes through the queue instead when no place is free, when this process runs
//! no events (`basin serve --queue-only`), or when the function has `to=` (its commit
//! consumes its event, exactly once).

use basin_catalog::{EventOutcome, EventRecord, NewEvent, RanCall};
use basin_core::time::now_ms;
use basin_core::{Error, Result};
use std::sync::atomic::Ordering;

use super::settle::failure;
use super::{DEFAULT_CONCURRENCY, Dispatcher, Slot};
use crate::deployed::DeployedFunction;

/// A place taken to run one synchronous call at once ([`Dispatcher::now`]).
pub(crate) struct Now {
    slot: Slot,
    function: DeployedFunction,
}

impl Dispatcher {
    /// A place to run a synchronous call of `function` at once; `None` when it must be
    /// queued (see the module's comment).
    pub(crate) fn now(&self, function: &DeployedFunction) -> Option<Now> {
        if !self.runs_events.load(Ordering::Relaxed) || function.declaration.to.is_some() {
            return None;
        }
        let limit = function
            .declaration
            .concurrency
            .unwrap_or(DEFAULT_CONCURRENCY);
        Some(Now {
            slot: self.try_slot(&function.name, limit)?.used_at_once(),
            function: function.clone(),
        })
    }

    /// One call as a one-event batch of the function's deployer, stored once it settled.
    async fn run_call(
        &self,
        function: &DeployedFunction,
        body: serde_json::Value,
    ) -> Result<EventRecord> {
        let created_at_ms = now_ms();
        let event = NewEvent {
            id: basin_core::ids::ordered(),
            function: function.name.clone(),
            payload: body,
            max_attempts: 1,
        };
        let claimed = event.claimed(&self.node, created_at_ms);
        self.counters.claimed.fetch_add(1, Ordering::Relaxed);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters.calls_at_once.fetch_add(1, Ordering::Relaxed);
        let tried = self
            .attempts(function, std::slice::from_ref(&claimed))
            .await;
        let attempt = tried
            .attempts
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal(format!("`{}` was not attempted", function.name)))?;
        let outcome = match attempt.error() {
            Some(error) => failure(&claimed, error, attempt.logs),
            None => EventOutcome::Succeeded {
                result: attempt.json(),
                logs: attempt.logs,
            },
        };
        let call = RanCall {
            event,
            node: self.node.to_string(),
            created_at_ms,
            outcome,
            invocations: tried.invocations,
        };
        self.lakehouse.catalog().store().record_call(&call).await?;
        self.counters.settled([&call.outcome]);
        Ok(call.settled())
    }
}

impl Now {
    /// Runs the call with `body` as its event, on a task of its own (a caller that hangs up
    /// does not stop it halfway: its event and its metering are still stored), as the
    /// function's deployer; returns the settled event.
    pub(crate) async fn run(self, body: serde_json::Value) -> Result<EventRecord> {
        let Now { slot, function } = self;
        let dispatcher = slot.dispatcher.clone();
        let work = async move {
            let _slot = slot;
            let call = dispatcher.run_call(&function, body);
            basin_catalog::actor::scope(function.actor(), call).await
        };
        tokio::spawn(work)
            .await
            .map_err(|e| Error::internal(format!("a synchronous call's task ended: {e}")))?
    }
}
