//! The dispatcher `basin serve` runs: it leases due events from the queue, invokes their
//! functions in parallel up to each function's concurrency, and settles each event: a
//! function with `to=` appends its results in one commit per batch that consumes the
//! batch's events (so a retried event never appends twice); a failure backs off, and the
//! last allowed failure dead-letters the event.
//!
//! It sleeps between events: it wakes when a source stores one, when a backoff or a lease
//! runs out, or when a batch finishes. No events, no work.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basin_catalog::{ErrorKind, EventOutcome, EventRecord, Result};
use basin_ingest::{Format, ImportRequest, Mode};
use basin_runtime::{Finished, Invocation, Limits, Output, Target};
use tokio::sync::{Notify, watch};

use super::deploy::DeployedFunction;
use crate::Lakehouse;
use crate::functions::env_spec;

/// A triggered function's time limit when it declares none.
pub const DEFAULT_EVENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Batches of one function in flight when it declares no concurrency.
const DEFAULT_CONCURRENCY: usize = 4;
/// How long after an attempt's time limit its lease runs out (room for the commit).
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// The first retry's delay; each further one doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct Dispatcher {
    lakehouse: Lakehouse,
    wake: Arc<Notify>,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Dispatcher {
    pub fn new(lakehouse: Lakehouse) -> Self {
        Self {
            lakehouse,
            wake: Arc::new(Notify::new()),
            in_flight: Arc::default(),
        }
    }

    /// Tells the dispatcher new events are stored.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Dispatches until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
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

    /// Starts batches for every function with due events and free slots; returns how long
    /// until the next backoff or lease ends.
    async fn dispatch_due(&self) -> Result<Option<Duration>> {
        let store = self.lakehouse.catalog().store().clone();
        for function in self.lakehouse.deployed_functions().await? {
            let limit = function
                .declaration
                .concurrency
                .unwrap_or(DEFAULT_CONCURRENCY);
            loop {
                if self.busy(&function.name) >= limit {
                    break;
                }
                let now = now_ms();
                let lease = timeout(&function) + LEASE_MARGIN;
                let batch = store
                    .claim_events(
                        &function.name,
                        function.declaration.batch_size.max(1),
                        now,
                        now + lease.as_millis() as i64,
                    )
                    .await?;
                if batch.is_empty() {
                    break;
                }
                self.start(function.clone(), batch);
            }
        }
        let next = store.next_event_due().await?;
        Ok(next.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64 + 5)))
    }

    fn busy(&self, function: &str) -> usize {
        self.in_flight
            .lock()
            .expect("not poisoned")
            .get(function)
            .copied()
            .unwrap_or(0)
    }

    fn start(&self, function: DeployedFunction, batch: Vec<EventRecord>) {
        *self
            .in_flight
            .lock()
            .expect("not poisoned")
            .entry(function.name.clone())
            .or_default() += 1;
        let this = self.clone();
        tokio::spawn(async move {
            let name = function.name.clone();
            if let Err(e) = this.handle(function, batch).await {
                tracing::error!(function = name, "a batch of events failed: {e}");
            }
            if let Some(n) = this.in_flight.lock().expect("not poisoned").get_mut(&name) {
                *n -= 1;
            }
            this.wake();
        });
    }

    /// Invokes the function once per event (in parallel), then settles the batch.
    async fn handle(&self, function: DeployedFunction, batch: Vec<EventRecord>) -> Result<()> {
        let attempts =
            futures::future::join_all(batch.iter().map(|event| self.attempt(&function, event)))
                .await;
        let store = self.lakehouse.catalog().store();
        let mut outputs: Vec<(EventRecord, Attempt)> = Vec::new();
        for (event, attempt) in batch.into_iter().zip(attempts) {
            match attempt.error() {
                Some(error) => {
                    store
                        .finish_event(&event.id, &failure(&event, error, attempt.logs))
                        .await?
                }
                None if function.declaration.to.is_some() => {
                    if attempt.output_file().is_some() {
                        outputs.push((event, attempt));
                    } else {
                        let error = format!(
                            "`{}` returned no table, so there is nothing to append to `{}`",
                            function.name,
                            function.declaration.to.as_deref().unwrap_or_default()
                        );
                        store
                            .finish_event(&event.id, &failure(&event, error, attempt.logs))
                            .await?
                    }
                }
                None => {
                    let result = match &attempt.finished.as_ref().map(|f| &f.result) {
                        Some(Ok(Output::Json(v))) => Some(v.clone()),
                        _ => None,
                    };
                    let outcome = EventOutcome::Succeeded {
                        logs: attempt.logs,
                        result,
                    };
                    store.finish_event(&event.id, &outcome).await?
                }
            }
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
        let store = self.lakehouse.catalog().store();
        let together = self.append(table, &outputs).await;
        let settled: Vec<(&EventRecord, &Attempt, Result<()>)> = match together {
            Ok(()) => outputs.iter().map(|(e, a)| (e, a, Ok(()))).collect(),
            Err(_) if outputs.len() > 1 => {
                let mut each = Vec::new();
                for (event, attempt) in &outputs {
                    let one = [(event.clone(), attempt.clone())];
                    each.push((event, attempt, self.append(table, &one).await));
                }
                each
            }
            Err(e) => vec![(&outputs[0].0, &outputs[0].1, Err(e))],
        };
        for (event, attempt, result) in settled {
            let outcome = match result {
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
            };
            store.finish_event(&event.id, &outcome).await?;
        }
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
        self.lakehouse.import(request, None).await.map(drop)
    }

    /// One invocation of the function for one event.
    async fn attempt(&self, function: &DeployedFunction, event: &EventRecord) -> Attempt {
        let logs = Arc::new(Mutex::new(String::new()));
        let result = self.invoke(function, event, logs.clone()).await;
        let logs = std::mem::take(&mut *logs.lock().expect("not poisoned"));
        match result {
            Ok(finished) => Attempt {
                finished: Some(Arc::new(finished)),
                error: None,
                logs,
            },
            Err(e) => Attempt {
                finished: None,
                error: Some(e.to_string()),
                logs,
            },
        }
    }

    async fn invoke(
        &self,
        function: &DeployedFunction,
        event: &EventRecord,
        logs: Arc<Mutex<String>>,
    ) -> Result<Finished> {
        let runtime = self.lakehouse.runtime()?;
        let declaration = &function.declaration;
        let spec = env_spec(declaration, None, &Default::default(), &[]);
        let env = runtime.environment(&spec).await?;
        let mut workspace = runtime.workspace()?;
        if let Some(path) = self.object_path(function, event) {
            workspace.attach_object(&path)?;
        }
        let invocation = Invocation {
            function: function.name.clone(),
            target: Target::Python {
                file: declaration.file.clone(),
                name: function.name.clone(),
                source: function.source.clone(),
            },
            env,
            preload: spec.packages.keys().cloned().collect(),
            event: event.payload.clone(),
            params: serde_json::Value::Null,
            secrets: crate::functions::secrets_for(declaration, &[])?,
            limits: Limits {
                timeout: Some(timeout(function)),
                memory_bytes: declaration.memory_bytes,
                internet: declaration.internet,
            },
            concurrency: declaration.concurrency,
        };
        let sink: basin_runtime::OutputSink = Arc::new(move |_, line: &str| {
            let mut logs = logs.lock().expect("not poisoned");
            logs.push_str(line);
            logs.push('\n');
        });
        let finished = runtime.invoke(workspace, invocation, sink).await;
        self.lakehouse
            .catalog()
            .store()
            .record_invocation(&finished.record)
            .await?;
        Ok(finished)
    }

    /// The file an object event is about, in the embedded default's bucket folders.
    fn object_path(&self, function: &DeployedFunction, event: &EventRecord) -> Option<PathBuf> {
        let basin_runtime::Trigger::Object { bucket, .. } = function.trigger()? else {
            return None;
        };
        let key = event.payload.get("key")?.as_str()?;
        Some(self.lakehouse.bucket_dir(bucket).join(key))
    }
}

fn timeout(function: &DeployedFunction) -> Duration {
    function
        .declaration
        .timeout_seconds
        .map_or(DEFAULT_EVENT_TIMEOUT, Duration::from_secs_f64)
}

/// A failed attempt: retried after a doubling backoff, or dead after the last attempt.
fn failure(event: &EventRecord, error: String, logs: String) -> EventOutcome {
    let retry_at_ms = (event.attempts < event.max_attempts).then(|| {
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << event.attempts.saturating_sub(1).min(16))
            .min(MAX_BACKOFF);
        now_ms() + backoff.as_millis() as i64
    });
    EventOutcome::Failed {
        error,
        logs,
        retry_at_ms,
    }
}

/// One invocation's end: its output (kept alive until the commit) or its error.
#[derive(Clone)]
struct Attempt {
    finished: Option<Arc<Finished>>,
    error: Option<String>,
    logs: String,
}

impl Attempt {
    fn error(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.clone());
        }
        match &self.finished.as_ref()?.result {
            Ok(_) => None,
            Err(e) => Some(match &e.hint {
                Some(hint) => format!("{}\nhint: {hint}", e.message),
                None => e.message.clone(),
            }),
        }
    }

    fn output_file(&self) -> Option<PathBuf> {
        self.finished.as_ref()?.output_file()
    }
}
