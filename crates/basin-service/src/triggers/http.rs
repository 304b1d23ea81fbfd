//! HTTP triggers: `@basin.http(path)`. `basin serve` answers a call when the handler is done
//! (synchronous) or at once with its event's id (asynchronous). An asynchronous call, and a
//! synchronous one that cannot run at once (see `dispatch/now.rs`), stores its JSON
//! body as an event first, like any other source, so it is durable before it is answered; a
//! synchronous call run at once is stored when it is done.

use std::time::Duration;

use basin_catalog::{EventRecord, NewEvent};
use basin_core::{Error, Result};
use basin_runtime::Trigger;

use super::Triggers;
use crate::deployed::DeployedFunction;
use crate::dispatch::{Dispatcher, timeout};

/// Basin's own paths, which a function may not declare.
const RESERVED: [&str; 6] = ["/api/", "/v1/", "/console/", "/fn/", "/healthz", "/metrics"];

/// Refuses a declared path that is not one: it must start with `/` and not be Basin's.
pub fn check_path(path: &str) -> Result<()> {
    let reserved = path == "/" || RESERVED.iter().any(|r| path.starts_with(r));
    if !path.starts_with('/') || reserved || path.contains(['?', '#']) {
        return Err(
            Error::invalid(format!("`{path}` cannot be a function's path")).with_hint(
                "declare a path like \"/hooks/orders\" (not under /api/, /v1/, /fn/ or /console/), \
                 or none to be called at /fn/NAME",
            ),
        );
    }
    Ok(())
}

/// How a call is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// After the handler: its result, or its error. Attempted once; the caller decides
    /// whether to call again.
    Sync,
    /// At once, with the event's id; retried like any event.
    Async,
}

impl Triggers<'_> {
    /// The deployed HTTP function called at `path`: `/fn/NAME`, or the path it declared.
    pub async fn http_function(&self, path: &str) -> Result<DeployedFunction> {
        let by_name = path.strip_prefix("/fn/");
        let mut called: Vec<DeployedFunction> = self
            .lake
            .deployed()
            .list()
            .await?
            .into_iter()
            .filter(|f| match f.trigger() {
                Some(Trigger::Http { path: declared }) => {
                    declared.as_deref() == Some(path) || by_name == Some(f.name.as_str())
                }
                _ => false,
            })
            .collect();
        match called.len() {
            1 => Ok(called.remove(0)),
            0 => Err(
                Error::not_found(format!("no function is deployed at {path}")).with_hint(
                    "declare one with @basin.http and `basin deploy` it; `basin functions ls` \
                     lists the deployed ones",
                ),
            ),
            // Deploys refuse this; functions deployed before they did may still hold it.
            _ => Err(Error::new(
                basin_core::ErrorKind::Conflict,
                format!(
                    "{} functions are deployed at {path}: {}",
                    called.len(),
                    called
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_hint("remove all but one (basin functions rm NAME)")),
        }
    }
}

/// What a call came to.
#[derive(Debug)]
pub enum Called {
    /// Asynchronous: queued as this event.
    Queued(String),
    /// Synchronous: done, succeeded or failed.
    Settled(Box<EventRecord>),
    /// Synchronous, but not done within [`sync_limit`]: still this event, in the queue.
    Unsettled(String),
}

impl Dispatcher {
    /// Calls `function` with `body`: at once where it can (a synchronous call without an
    /// idempotency key), through the queue otherwise.
    pub async fn answer(
        &self,
        function: &DeployedFunction,
        body: serde_json::Value,
        how: Call,
        idempotency_key: Option<&str>,
    ) -> Result<Called> {
        if how == Call::Sync
            && idempotency_key.is_none()
            && let Some(now) = self.now(function)
        {
            return Ok(Called::Settled(Box::new(now.run(body).await?)));
        }
        let id = self.call(function, body, how, idempotency_key).await?;
        if how == Call::Async {
            return Ok(Called::Queued(id));
        }
        Ok(match self.settled(&id, sync_limit(function)).await? {
            Some(event) => Called::Settled(Box::new(event)),
            None => Called::Unsettled(id),
        })
    }

    /// Stores a call of `function` with `body` as its event and wakes the dispatcher; returns
    /// the event's id. With an idempotency key, calls with the same key are one event.
    pub async fn call(
        &self,
        function: &DeployedFunction,
        body: serde_json::Value,
        how: Call,
        idempotency_key: Option<&str>,
    ) -> Result<String> {
        let id = match idempotency_key {
            Some(key) => crate::queue::event_id(&[&function.name, "http", key]),
            None => basin_core::ids::ordered(),
        };
        let event = NewEvent {
            id: id.clone(),
            function: function.name.clone(),
            payload: body,
            max_attempts: match how {
                Call::Sync => 1,
                Call::Async => function.declaration.max_attempts,
            },
        };
        self.lakehouse()
            .catalog()
            .store()
            .enqueue_events(&[event])
            .await?;
        self.wake();
        Ok(id)
    }
}

/// How long a synchronous call waits for its handler: the function's time limit, and room
/// for the queue and the commit.
pub fn sync_limit(function: &DeployedFunction) -> Duration {
    timeout(function) + Duration::from_secs(10)
}
