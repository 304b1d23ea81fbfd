//! How a batch's attempts settle: each becomes an event's outcome (succeeded, or failed and
//! backed off, or dead), and a function with `to=` appends its outputs in a commit that
//! consumes their events.

use std::time::Duration;

use basin_catalog::{EventOutcome, EventRecord, Settled};
use basin_core::time::now_ms;
use basin_core::{ErrorKind, Result};
use basin_ingest::{Format, ImportRequest, Mode};

use super::Dispatcher;
use super::attempt::Attempt;
use crate::deployed::DeployedFunction;
use crate::queue::renew_leases;

/// The first retry's delay; each further one doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Dispatcher {
    /// Runs the batch in one invocation (the handler once per event), then settles each
    /// event. The batch's leases are renewed while it runs.
    pub(super) async fn handle(
        &self,
        function: DeployedFunction,
        batch: Vec<EventRecord>,
    ) -> Result<()> {
        // What the function writes names it as the author, through the `function` door,
        // and may go only where its deployer's grants allow.
        basin_catalog::actor::scope(function.actor(), self.handle_batch(function, batch)).await
    }

    async fn handle_batch(
        &self,
        function: DeployedFunction,
        batch: Vec<EventRecord>,
    ) -> Result<()> {
        let _renewal = renew_leases(
            &self.lakehouse,
            batch.iter().map(|e| e.id.clone()).collect(),
        );
        let tried = self.attempts(&function, &batch).await;
        let store = self.lakehouse.catalog().store();
        for invocation in &tried.invocations {
            store.record_invocation(invocation).await?;
        }
        let mut outputs: Vec<(EventRecord, Attempt)> = Vec::new();
        // Every outcome but the appended outputs', settled together in one transaction.
        let mut settled = Vec::new();
        for (event, attempt) in batch.into_iter().zip(tried.attempts) {
            let outcome = match attempt.error() {
                Some(error) => failure(&event, error, attempt.logs),
                None if function.declaration.to.is_some() => {
                    if attempt.output_file().is_some() {
                        outputs.push((event, attempt));
                        continue;
                    }
                    let error = format!(
                        "`{}` returned no table, so there is nothing to append to `{}`",
                        function.name,
                        function.declaration.to.as_deref().unwrap_or_default()
                    );
                    failure(&event, error, attempt.logs)
                }
                None => EventOutcome::Succeeded {
                    result: attempt.json(),
                    logs: attempt.logs,
                },
            };
            settled.push(Settled {
                id: event.id,
                attempt: event.attempts,
                outcome,
            });
        }
        if !settled.is_empty() {
            self.settle(&settled).await?;
        }
        if let Some(table) = &function.declaration.to {
            self.store_outputs(table, outputs).await?;
        }
        Ok(())
    }

    /// Appends the outputs in one commit that consumes their events; if that fails, one
    /// commit per event, so one bad output does not hold back the others.
    async fn store_outputs(&self, table: &str, outputs: Vec<(EventRecord, Attempt)>) -> Result<()> {
        if outputs.is_empty() {
            return Ok(());
        }
        let together = self.append(table, &outputs).await;
        let settled: Vec<(&EventRecord, &Attempt, Result<()>)> = match together {
            Ok(()) => outputs.iter().map(|(e, a)| (e, a, Ok(()))).collect(),
            Err(e) if outputs.len() > 1 => {
                tracing::warn!(
                    table,
                    events = outputs.len(),
                    "appending a batch's outputs in one commit failed, appending them one by one: {e}"
                );
                let mut each = Vec::new();
                for (event, attempt) in &outputs {
                    let one = [(event.clone(), attempt.clone())];
                    each.push((event, attempt, self.append(table, &one).await));
                }
                each
            }
            Err(e) => vec![(&outputs[0].0, &outputs[0].1, Err(e))],
        };
        let outcomes: Vec<Settled> = settled
            .into_iter()
            .map(|(event, attempt, result)| Settled {
                id: event.id.clone(),
                attempt: event.attempts,
                outcome: match result {
                    Err(e) if e.kind() != ErrorKind::AlreadyExists => failure(
                        event,
                        format!("cannot append to `{table}`: {e}"),
                        attempt.logs.clone(),
                    ),
                    // Stored now, or by an earlier attempt: either way exactly once.
                    _ => EventOutcome::Succeeded {
                        logs: attempt.logs.clone(),
                        result: None,
                    },
                },
            })
            .collect();
        self.settle(&outcomes).await
    }

    /// Stores the events' outcomes in one transaction, and counts them.
    async fn settle(&self, outcomes: &[Settled]) -> Result<()> {
        let store = self.lakehouse.catalog().store();
        store.finish_events(outcomes).await?;
        self.counters.settled(outcomes.iter().map(|s| &s.outcome));
        Ok(())
    }

    async fn append(&self, table: &str, outputs: &[(EventRecord, Attempt)]) -> Result<()> {
        let files: Vec<String> = outputs
            .iter()
            .filter_map(|(_, a)| a.output_file())
            .map(|p| p.display().to_string())
            .collect();
        let mut request = ImportRequest::new(files, table, basin_catalog::MAIN);
        request.format = Some(Format::Arrow);
        request.mode = Mode::Append;
        request.allow_new_columns = true;
        request.events = outputs.iter().map(|(e, _)| e.id.clone()).collect();
        let function = outputs.first().map_or("", |(e, _)| e.function.as_str());
        request.message = Some(match outputs.len() {
            1 => format!(
                "function {function} wrote {table} (append, event {})",
                outputs[0].0.id
            ),
            n => format!("function {function} wrote {table} (append, {n} events)"),
        });
        request.properties.insert(
            basin_table::lineage::PROPERTY.to_string(),
            basin_table::lineage::Writer::new("function", function, Vec::new()).property(),
        );
        self.lakehouse.import(request, None).await.map(drop)
    }
}

/// A failed attempt: retried after a doubling backoff, or dead after the last attempt. Each
/// is logged in one line (function, event, object, the error's first line), as Lambda does.
pub(super) fn failure(event: &EventRecord, error: String, logs: String) -> EventOutcome {
    let retry_in = (event.attempts < event.max_attempts).then(|| {
        FIRST_BACKOFF
            .saturating_mul(1 << event.attempts.saturating_sub(1).min(16))
            .min(MAX_BACKOFF)
    });
    let object = event_object(&event.payload).unwrap_or("-");
    let first_line = error.lines().next().unwrap_or_default();
    let attempt = format!("{}/{}", event.attempts, event.max_attempts);
    match retry_in {
        Some(wait) => tracing::warn!(
            function = event.function,
            event = event.id,
            object,
            attempt,
            "failed, retried in {}s: {first_line}",
            wait.as_secs()
        ),
        None => tracing::error!(
            function = event.function,
            event = event.id,
            object,
            attempt,
            "dead (`basin events retry {}` runs it again): {first_line}",
            event.id
        ),
    }
    let retry_at_ms = retry_in.map(|wait| now_ms() + wait.as_millis() as i64);
    EventOutcome::Failed {
        error,
        logs,
        retry_at_ms,
    }
}

/// The object an event is about, for logs: an S3-style record's key, or a bucket event's path.
fn event_object(payload: &serde_json::Value) -> Option<&str> {
    let record = payload
        .get("Records")
        .and_then(|r| r.get(0))
        .unwrap_or(payload);
    record["s3"]["object"]["key"]
        .as_str()
        .or_else(|| payload["key"].as_str())
        .or_else(|| payload["path"].as_str())
}
