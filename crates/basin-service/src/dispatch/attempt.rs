//! A batch's invocation turned into one attempt per event: its error, or its output and
//! what it printed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use basin_catalog::EventRecord;
use basin_core::{Error, InvocationRecord};
use basin_runtime::{Finished, Output};

use super::Dispatcher;
use crate::deployed::DeployedFunction;

/// A batch's attempts, one per event, and the metering of the invocations they took (which
/// the caller stores: with the events' outcomes, or before them).
pub(super) struct Tried {
    pub(super) attempts: Vec<Attempt>,
    pub(super) invocations: Vec<InvocationRecord>,
}

impl Dispatcher {
    /// One attempt per event: the whole batch in one invocation. If that invocation fails as
    /// a whole (it crashed, or ran out of time or memory), each event runs alone, so one bad
    /// event does not fail the others.
    pub(super) async fn attempts(
        &self,
        function: &DeployedFunction,
        batch: &[EventRecord],
    ) -> Tried {
        let (whole, metered) = self.attempt(function, batch).await;
        let mut invocations: Vec<InvocationRecord> = metered.into_iter().collect();
        let attempts = match whole {
            Ok(attempts) => attempts,
            Err(failed) if batch.len() == 1 => vec![failed],
            Err(_) => {
                let alone = batch
                    .iter()
                    .map(|event| self.attempt(function, std::slice::from_ref(event)));
                let mut attempts = Vec::with_capacity(batch.len());
                for (one, metered) in futures::future::join_all(alone).await {
                    invocations.extend(metered);
                    attempts.push(match one {
                        Ok(mut one) => one.remove(0),
                        Err(failed) => failed,
                    });
                }
                attempts
            }
        };
        Tried {
            attempts,
            invocations,
        }
    }

    /// One invocation for `events`: an attempt per event, or the invocation's own failure;
    /// and its metering, if it started.
    async fn attempt(
        &self,
        function: &DeployedFunction,
        events: &[EventRecord],
    ) -> (
        std::result::Result<Vec<Attempt>, Attempt>,
        Option<InvocationRecord>,
    ) {
        let logs = Arc::new(Mutex::new(basin_runtime::OutputLog::new(
            &self.lakehouse.settings().runtime,
        )));
        let result = self.invoke(function, events, logs.clone()).await;
        let logs = logs.lock().expect("not poisoned").take();
        let finished = match result {
            Ok(finished) => Arc::new(finished),
            Err(e) => return (Err(Attempt::failed(e.to_string(), logs)), None),
        };
        let metered = Some(finished.record.clone());
        let attempts = match &finished.result {
            Ok(Output::Batch(items)) if items.len() == events.len() => Ok(items
                .iter()
                .enumerate()
                .map(|(index, item)| Attempt {
                    finished: Some(finished.clone()),
                    index,
                    error: item.result.as_ref().err().map(Error::with_hint_line),
                    logs: item.logs.clone(),
                })
                .collect()),
            Ok(_) => Err(Attempt::failed(
                format!("`{}` did not answer for each event", function.name),
                logs,
            )),
            Err(e) => Err(Attempt::failed(e.with_hint_line(), logs)),
        };
        (attempts, metered)
    }
}

/// One event's handler call: its error, or its output (the invocation, kept alive until the
/// commit, holds the file), and what it printed.
#[derive(Clone)]
pub(super) struct Attempt {
    finished: Option<Arc<Finished>>,
    /// The event's place in the invocation's batch.
    index: usize,
    error: Option<String>,
    pub(super) logs: String,
}

impl Attempt {
    pub(super) fn failed(error: String, logs: String) -> Self {
        Self {
            finished: None,
            index: 0,
            error: Some(error),
            logs,
        }
    }

    pub(super) fn error(&self) -> Option<String> {
        self.error.clone()
    }

    pub(super) fn output_file(&self) -> Option<PathBuf> {
        self.finished.as_ref()?.item_output_file(self.index)
    }

    /// The JSON value the call returned, if it returned one.
    pub(super) fn json(&self) -> Option<serde_json::Value> {
        match &self.finished.as_ref()?.result {
            Ok(Output::Batch(items)) => match &items.get(self.index)?.result {
                Ok(Output::Json(v)) => Some(v.clone()),
                _ => None,
            },
            _ => None,
        }
    }
}
