//! Models on a cluster. On a shared catalog `basin run` hands each model to the event queue
//! as an event of the run's own queue (`run/ID`, one event `run/ID/MODEL` per model), which
//! `basin worker` and `basin serve` nodes lease like triggered batches: the node that takes
//! it rebuilds the project from the run record's code, reads the model's table inputs at the
//! run's start and its upstream models' outputs from the warehouse, runs the model, stores
//! its table on the run branch, and leaves its output in the warehouse for the models after
//! it (Arrow IPC, `WAREHOUSE/_runs/ID/MODEL.arrow`). The run is still one branch merged in
//! one commit by the node that started it.
//!
//! A model no node takes within `[functions] model_worker_wait` runs where `basin run` runs,
//! through the same queue (so it runs once). A model that needs secrets always runs there:
//! secrets are the starting node's environment variables and never travel through the queue.
//! A node lost while running a model loses its lease; another node runs the model again, which
//! stores the same table (models replace their tables) — except a model that appends, whose
//! second attempt fails the run instead of appending twice.

use super::{Logs, new_logs};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use basin_catalog::{EventFilter, EventOutcome, EventRecord, EventState, NewEvent, Settled};
use basin_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::dag::{Dag, Source};
use super::job::ModelJob;
use super::{ModelDone, Produced, Project};
use crate::Lakehouse;
use crate::queue::node_name;
use crate::queue::renew_leases;

/// The queues of runs' models are `run/ID`.
pub(crate) const QUEUE_PREFIX: &str = "run/";
/// How often the node that started a run looks at its models' events.
const POLL: Duration = Duration::from_millis(50);

/// What a node needs to run one model of a run: the event's payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ModelTask {
    pub run: String,
    pub model: String,
    /// The run branch's commit the run started from, where table inputs are read.
    pub at: String,
    /// Upstream models' outputs, by model name: Arrow IPC files in the warehouse.
    pub inputs: BTreeMap<String, String>,
}

/// How a model ended on the node that ran it: the event's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ModelResult {
    pub rows: u64,
    pub table: Option<String>,
    pub commit: Option<String>,
    /// The stored table's metadata file, for the run cache of the starting node.
    pub metadata_location: Option<String>,
    /// Where its output lies.
    pub output: String,
    pub node: String,
}

/// The queue of one run, on the node that started it.
pub(crate) struct RunQueue {
    lakehouse: Lakehouse,
    run: String,
    /// How long a model waits for another node before it runs here.
    wait: Duration,
    /// Outputs in the warehouse so far, by model name.
    outputs: Mutex<BTreeMap<String, String>>,
}

impl RunQueue {
    pub(crate) fn new(lakehouse: &Lakehouse, run: &str) -> Self {
        Self {
            lakehouse: lakehouse.clone(),
            run: run.to_string(),
            wait: lakehouse.settings().model_worker_wait,
            outputs: Mutex::default(),
        }
    }

    fn queue(&self) -> String {
        format!("{QUEUE_PREFIX}{}", self.run)
    }

    /// Runs `job`'s model on whichever node takes it (this one if it needs secrets, or if
    /// no other takes it in time); its output is in the warehouse after, for the models
    /// after it. Returns what ran, and the node it ran on.
    pub(crate) async fn run(&self, job: &ModelJob, logs: Logs) -> Result<(ModelDone, String)> {
        let model = job.project.models[job.index].name.clone();
        if let Some(done) = job.cached() {
            self.keep(&model, &done.produced).await?;
            return Ok((done, node_name().to_string()));
        }
        if job.needs_secrets() {
            let done = job.run(logs).await?;
            self.keep(&model, &done.produced).await?;
            return Ok((done, node_name().to_string()));
        }
        let inputs = job.dag.inputs[job.index]
            .iter()
            .filter_map(|s| match s {
                Source::Model(m) => Some(job.project.models[*m].name.clone()),
                Source::Table(_) => None,
            })
            .map(|name| {
                let output = self.outputs.lock().expect("outputs").get(&name).cloned();
                output
                    .map(|o| (name.clone(), o))
                    .ok_or_else(|| Error::internal(format!("no output of `{name}` yet")))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        let task = ModelTask {
            run: self.run.clone(),
            model: model.clone(),
            at: job.at.clone(),
            inputs,
        };
        let id = format!("{}/{model}", self.queue());
        let store = self.lakehouse.catalog().store().clone();
        store
            .enqueue_events(&[NewEvent {
                id: id.clone(),
                function: self.queue(),
                payload: serde_json::to_value(&task).expect("a task is JSON"),
                // A failure is the model's and final; a lost node's lease runs out and
                // another node takes the model again whatever this says.
                max_attempts: 1,
            }])
            .await?;
        let waiting = tokio::time::Instant::now();
        let event = loop {
            let event = event(&self.lakehouse, &self.queue(), &id).await?;
            let now = chrono::Utc::now().timestamp_millis();
            let ours = match event.state {
                EventState::Succeeded | EventState::Failed | EventState::Dead => break event,
                // No other node took it in time.
                EventState::Pending => waiting.elapsed() >= self.wait,
                // The node running it stopped renewing its lease: it is lost.
                EventState::Running => event.lease_until_ms.is_some_and(|until| until <= now),
            };
            if !ours {
                tokio::time::sleep(POLL).await;
                continue;
            }
            // Run it here, through the queue all the same (so it still runs once).
            let lease = self.lakehouse.settings().event_lease;
            let claimed = store
                .claim_events(
                    &self.queue(),
                    1,
                    now,
                    now + lease.as_millis() as i64,
                    node_name(),
                )
                .await?;
            if claimed.is_empty() {
                tokio::time::sleep(POLL).await; // another node was quicker
            }
            for event in claimed {
                work_on(&self.lakehouse, event).await;
            }
        };
        {
            let mut shown = logs.lock().expect("logs");
            for line in event.logs.lines() {
                shown.push(line);
                (job.sink)(&model, basin_runtime::Stream::Stdout, line);
            }
        }
        if event.state != EventState::Succeeded {
            let error = event.error.unwrap_or_else(|| "it failed".into());
            let node = event.node.unwrap_or_else(|| "?".into());
            return Err(Error::invalid(format!("{error} (on {node})")));
        }
        let result: ModelResult = event
            .result
            .and_then(|r| serde_json::from_value(r).ok())
            .ok_or_else(|| Error::internal(format!("model `{model}` ended with no result")))?;
        let produced = read_output(&self.lakehouse, &result.output).await?;
        job.remember(&produced, result.metadata_location.clone());
        self.outputs
            .lock()
            .expect("outputs")
            .insert(model, result.output);
        Ok((
            ModelDone {
                produced,
                table: result.table,
                commit: result.commit,
                cache_hit: false,
                metadata_location: result.metadata_location,
            },
            result.node,
        ))
    }

    /// Puts an output that was made here into the warehouse, for models run elsewhere.
    async fn keep(&self, model: &str, produced: &Produced) -> Result<()> {
        let location = output_location(&self.lakehouse, &self.run, model);
        write_output(&self.lakehouse, &location, produced).await?;
        self.outputs
            .lock()
            .expect("outputs")
            .insert(model.to_string(), location);
        Ok(())
    }

    /// Deletes the run's outputs from the warehouse (the run is over).
    pub(crate) async fn clean(&self) {
        let outputs = std::mem::take(&mut *self.outputs.lock().expect("outputs"));
        let io = self.lakehouse.warehouse().file_io();
        for location in outputs.values() {
            if let Err(e) = io.delete(location).await {
                tracing::warn!("run {}: cannot delete {location}: {e}", self.run);
            }
        }
    }
}

/// Event `id` of `queue` (one per model of the run).
async fn event(lakehouse: &Lakehouse, queue: &str, id: &str) -> Result<EventRecord> {
    let filter = EventFilter {
        state: None,
        function: Some(queue.to_string()),
        limit: 10_000,
    };
    let found = lakehouse.catalog().store().events(&filter).await?;
    found
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| Error::not_found(format!("no event `{id}`")))
}

fn output_location(lakehouse: &Lakehouse, run: &str, model: &str) -> String {
    format!(
        "{}/_runs/{run}/{model}.arrow",
        lakehouse.warehouse().location()
    )
}

async fn write_output(lakehouse: &Lakehouse, location: &str, produced: &Produced) -> Result<()> {
    let mut bytes = Vec::new();
    basin_runtime::write_ipc(&mut bytes, &produced.schema, &produced.batches, location)?;
    lakehouse
        .warehouse()
        .file_io()
        .new_output(location)
        .map_err(|e| Error::io_with(location, e))?
        .write(bytes.into())
        .await
        .map_err(|e| Error::io_with(format!("cannot write {location}"), e))
}

async fn read_output(lakehouse: &Lakehouse, location: &str) -> Result<Produced> {
    let bytes = lakehouse
        .warehouse()
        .file_io()
        .new_input(location)
        .map_err(|e| Error::io_with(location, e))?
        .read()
        .await
        .map_err(|e| Error::io_with(format!("cannot read {location}"), e))?;
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| Error::io_with(location, e))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<RecordBatch>, _>>()
        .map_err(|e| Error::io_with(location, e))?;
    Ok(Produced { schema, batches })
}

/// Runs a claimed model event and settles it, renewing its lease meanwhile.
pub(crate) async fn work_on(lakehouse: &Lakehouse, event: EventRecord) {
    let _renewal = renew_leases(lakehouse, vec![event.id.clone()]);
    let logs = new_logs(lakehouse);
    let outcome = match run_task(lakehouse, &event, logs.clone()).await {
        Ok(result) => EventOutcome::Succeeded {
            logs: logs.lock().expect("logs").take(),
            result: Some(serde_json::to_value(result).expect("a result is JSON")),
        },
        Err(e) => EventOutcome::Failed {
            error: e.with_hint_line(),
            logs: logs.lock().expect("logs").take(),
            retry_at_ms: None,
        },
    };
    let settled = Settled {
        id: event.id.clone(),
        attempt: event.attempts,
        outcome,
    };
    if let Err(e) = lakehouse
        .catalog()
        .store()
        .finish_events(std::slice::from_ref(&settled))
        .await
    {
        tracing::error!(event = event.id, "cannot settle a model's event: {e}");
    }
}

/// Runs the model of `event` here.
async fn run_task(lakehouse: &Lakehouse, event: &EventRecord, logs: Logs) -> Result<ModelResult> {
    let task: ModelTask = serde_json::from_value(event.payload.clone())
        .map_err(|e| Error::invalid(format!("event `{}` holds no model: {e}", event.id)))?;
    let record = lakehouse.pipelines().show_run(&task.run).await?;
    if record.status != "running" {
        return Err(Error::invalid(format!(
            "run {} is {}, not running",
            record.id, record.status
        )));
    }
    // The project as the run's starting node read it.
    let folder = tempfile::tempdir().map_err(|e| Error::io_with("a temporary folder", e))?;
    for (path, text) in &record.code {
        let file = folder.path().join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io_with(parent.display(), e))?;
        }
        std::fs::write(&file, text).map_err(|e| Error::io_with(file.display(), e))?;
    }
    let sdk = basin_runtime::sdk_folder(&lakehouse.tools_dir())?;
    let project = Arc::new(Project::load(folder.path(), &sdk, &record.params).await?);
    let tables = lakehouse
        .tables()
        .list(Some(&task.at))
        .await?
        .into_iter()
        .map(|t| t.table)
        .collect();
    let dag = Arc::new(Dag::build(&project, &tables, &record.target)?);
    let index = project
        .models
        .iter()
        .position(|m| m.name == task.model)
        .ok_or_else(|| {
            Error::invalid(format!("run {} has no model `{}`", record.id, task.model))
        })?;
    if event.attempts > 1 && project.models[index].materialize == Some(basin_ingest::Mode::Append) {
        return Err(Error::invalid(format!(
            "model `{}` appends, and the node that ran it first was lost: it may have appended already",
            task.model
        ))
        .with_hint("run the pipeline again: this run's branch is not merged"));
    }
    let mut inputs = Vec::new();
    for source in &dag.inputs[index] {
        inputs.push(match source {
            Source::Model(m) => {
                let name = &project.models[*m].name;
                let location = task.inputs.get(name).ok_or_else(|| {
                    Error::internal(format!("the task gives no output of `{name}`"))
                })?;
                Some(Arc::new(read_output(lakehouse, location).await?))
            }
            Source::Table(_) => None,
        });
    }
    let job = ModelJob {
        lakehouse: lakehouse.clone(),
        project: project.clone(),
        dag,
        index,
        inputs,
        params: Arc::new(serde_json::to_value(&record.params).expect("parameters are JSON")),
        at: task.at.clone(),
        branch: record.branch.clone(),
        sink: Arc::new(|_, _, _| {}),
        cache: None,
        full_refresh: record.full_refresh,
    };
    let done = job.run(logs).await?;
    let output = output_location(lakehouse, &task.run, &task.model);
    write_output(lakehouse, &output, &done.produced).await?;
    Ok(ModelResult {
        rows: done
            .produced
            .batches
            .iter()
            .map(|b| b.num_rows() as u64)
            .sum(),
        table: done.table,
        commit: done.commit,
        metadata_location: done.metadata_location,
        output,
        node: node_name().to_string(),
    })
}

/// The queues of the runs in progress, newest first (looked at by nodes that run models).
pub(crate) async fn running_queues(lakehouse: &Lakehouse) -> Result<Vec<String>> {
    /// Runs looked at: a run older than the last few is finished, or its node is gone.
    const RECENT: usize = 16;
    Ok(lakehouse
        .pipelines()
        .list_runs(RECENT)
        .await?
        .into_iter()
        .filter(|r| r.status == "running")
        .map(|r| format!("{QUEUE_PREFIX}{}", r.id))
        .collect())
}
