//! A pipeline run's nouns: the request, its record and each model's, the logs they keep.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use basin_runtime::Stream;
use serde::{Deserialize, Serialize};

use crate::Lakehouse;

/// A model's output as its run record keeps it (`[functions] max_output_lines` and
/// `max_output_size`).
pub(crate) type Logs = Arc<Mutex<basin_runtime::OutputLog>>;

pub(crate) fn new_logs(lakehouse: &Lakehouse) -> Logs {
    Arc::new(Mutex::new(basin_runtime::OutputLog::new(
        &lakehouse.settings().runtime,
    )))
}

/// Whether a branch is one pipelines make for themselves (`run/ID` for each run, `replay/ID`
/// for replays), which listings leave out unless asked.
pub fn is_pipeline_branch(name: &str) -> bool {
    name.starts_with("run/") || name.starts_with("replay/")
}

/// `basin run`'s request.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    pub dir: PathBuf,
    /// The branch the run publishes to (default: the current branch).
    pub branch: Option<String>,
    pub params: Vec<(String, String)>,
    pub dry_run: bool,
    /// Run every model, even those whose inputs and code are unchanged.
    pub no_cache: bool,
    /// Rebuild incremental models whole, from every row of their inputs.
    pub full_refresh: bool,
    /// Keep the `run/<id>` branch after a merged run (by default only failed and dry runs
    /// leave it, for a look at what they did).
    pub keep_branch: bool,
}

/// Told each model's output lines, and each model's start and end.
pub type RunSink = Arc<dyn Fn(&str, Stream, &str) + Send + Sync>;
pub type RunProgress = Arc<dyn Fn(&ModelRun) + Send + Sync>;

/// A run, as `basin runs show` prints it and the catalog store keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub project: String,
    pub target: String,
    pub branch: String,
    /// `running`, `succeeded`, `failed`, or `dry-run`.
    pub status: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub params: BTreeMap<String, serde_json::Value>,
    /// The target's head the run read.
    pub read_commit: String,
    /// The merge commit on the target.
    pub merged_commit: Option<String>,
    /// True once the run branch is gone (deleted after the run merged).
    #[serde(default)]
    pub branch_deleted: bool,
    pub error: Option<String>,
    /// Incremental models were rebuilt whole (`--full-refresh`).
    #[serde(default)]
    pub full_refresh: bool,
    pub models: Vec<ModelRun>,
    /// The project's files as they were run.
    pub code: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelRun {
    pub name: String,
    /// `python`, `sql` or `expectation`.
    pub kind: String,
    /// `running`, `ok`, `failed`.
    pub status: String,
    pub ms: f64,
    pub rows: u64,
    /// The table it was stored in, and the commit that stored it (on the run branch).
    pub table: Option<String>,
    pub commit: Option<String>,
    pub error: Option<String>,
    pub logs: Vec<String>,
    /// True when the output was reused from an earlier run (nothing ran).
    #[serde(default)]
    pub cache_hit: bool,
    /// The node that ran it, when the run's models went through the queue of a shared
    /// catalog (`basin worker` nodes take them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What it read: the project's models by name, tables as `ns.table` (the run's DAG).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

/// What a model's task hands back.
pub(crate) struct ModelDone {
    pub(crate) produced: Produced,
    pub(crate) table: Option<String>,
    pub(crate) commit: Option<String>,
    pub(crate) cache_hit: bool,
    /// The stored table's metadata file after (for the run cache).
    pub(crate) metadata_location: Option<String>,
}

/// A model's output, kept for its children for the length of the run.
pub(crate) struct Produced {
    pub(crate) schema: SchemaRef,
    pub(crate) batches: Vec<RecordBatch>,
}
