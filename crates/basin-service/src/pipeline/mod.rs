//! Pipelines: a project's models run in DAG order on a run branch, checked by expectations,
//! and published to the target branch in one merge. A failure leaves the target untouched
//! and keeps the run branch to look at.

mod cache;
mod dag;
mod project;
mod replay;
pub mod scaffold;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use basin_catalog::{Error, Result};
use basin_ingest::{Format, ImportRequest};
use basin_runtime::{Invocation, Limits, ModelInput, Output, Stream, Target};
use datafusion::datasource::MemTable;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

pub use dag::{Dag, Source};
pub use project::{ModelDef, ModelKind, Project, resolve_parameters};
pub use replay::{ReplayReport, ReplayedOutput};

use crate::Lakehouse;
use crate::functions::{env_spec, input_query, plain, secrets_for};

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
    pub error: Option<String>,
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
}

/// What a model's task hands back.
struct ModelDone {
    produced: Produced,
    table: Option<String>,
    commit: Option<String>,
    cache_hit: bool,
}

/// A model's output, kept for its children for the length of the run.
struct Produced {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

const MAX_LOG_LINES: usize = 2000;

impl Lakehouse {
    /// Runs the project in `request.dir`; see the module docs.
    pub async fn run_pipeline(
        &self,
        request: RunRequest,
        sink: RunSink,
        progress: RunProgress,
    ) -> Result<RunRecord> {
        let params = resolve_parameters(&request.dir, &request.params)?;
        let sdk = basin_runtime::sdk_folder(&self.tools_dir())?;
        let project = Arc::new(Project::load(&request.dir, &sdk, &params).await?);
        let target = request
            .branch
            .clone()
            .unwrap_or_else(|| self.current_branch());
        let head = self.catalog().resolve(&target).await?;
        head.writable_branch()?;
        let tables: BTreeSet<String> = self
            .list_tables(Some(&target))
            .await?
            .into_iter()
            .map(|t| t.table)
            .collect();
        let dag = Arc::new(Dag::build(&project, &tables, &target)?);

        let id = uuid::Uuid::now_v7().simple().to_string()[..12].to_string();
        let branch = format!("run/{id}");
        self.catalog().create_branch(&branch, &head).await?;
        // Outputs go to the project's namespace; a first run creates it (on the run branch).
        if !self
            .list_namespaces(Some(&branch))
            .await?
            .contains(&project.namespace)
        {
            self.create_namespace(&project.namespace, Some(&branch))
                .await?;
        }
        let mut record = RunRecord {
            id: id.clone(),
            project: project.name.clone(),
            target: target.clone(),
            branch: branch.clone(),
            status: "running".into(),
            started_at_ms: chrono::Utc::now().timestamp_millis(),
            finished_at_ms: None,
            params: params.clone(),
            read_commit: head.commit.to_string(),
            merged_commit: None,
            error: None,
            models: Vec::new(),
            code: project.files.clone(),
        };
        self.save_run(&record).await?;
        let outcome = self
            .execute(
                &project,
                &dag,
                &params,
                &branch,
                !request.no_cache,
                sink,
                progress,
                &mut record,
            )
            .await;
        let outcome = match outcome {
            Ok(()) if request.dry_run => {
                record.status = "dry-run".into();
                Ok(())
            }
            Ok(()) => match self.merge(&branch, Some(&target), false).await {
                Ok(merge) => {
                    record.status = "succeeded".into();
                    record.merged_commit = merge.commit;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        record.finished_at_ms = Some(chrono::Utc::now().timestamp_millis());
        if let Err(e) = &outcome {
            record.status = "failed".into();
            record.error = Some(e.message.clone());
        }
        self.save_run(&record).await?;
        match outcome {
            Ok(()) => Ok(record),
            Err(e) => {
                let hint = format!(
                    "`{target}` is untouched; what the run did is on `{branch}`: basin query \"...\" --ref {branch}, basin runs show {id}"
                );
                Err(
                    Error::new(e.kind(), format!("run {id} failed: {}", e.message)).with_hint(
                        match &e.hint {
                            Some(h) => format!("{h}\n      {hint}"),
                            None => hint,
                        },
                    ),
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        project: &Arc<Project>,
        dag: &Arc<Dag>,
        params: &BTreeMap<String, serde_json::Value>,
        branch: &str,
        reuse: bool,
        sink: RunSink,
        progress: RunProgress,
        record: &mut RunRecord,
    ) -> Result<()> {
        let n = project.models.len();
        let mut produced: Vec<Option<Arc<Produced>>> = (0..n).map(|_| None).collect();
        let mut waiting: Vec<usize> = (0..n).map(|i| dag.upstream_count(i)).collect();
        let mut ready: Vec<usize> = dag
            .order
            .iter()
            .copied()
            .filter(|&i| waiting[i] == 0)
            .collect();
        type Done = (usize, ModelRun, Result<ModelDone>);
        let mut running: JoinSet<Done> = JoinSet::new();
        let params = Arc::new(serde_json::to_value(params).expect("parameters are JSON"));
        // Table inputs are read at the commit the run starts from, however the branch moves.
        let start = self.catalog().resolve(branch).await?;
        let at = format!("{branch}@{}", start.commit);
        let keys = self.cache_keys(project, dag, &params, &start).await?;
        let run_cache = cache::RunCache::new(cache::folder(&self.root().join(crate::BASIN_DIR)));
        let mut failure = None;
        loop {
            while let Some(i) = ready.pop() {
                let inputs: Vec<Option<Arc<Produced>>> = dag.inputs[i]
                    .iter()
                    .map(|s| match s {
                        Source::Model(m) => produced[*m].clone(),
                        Source::Table(_) => None,
                    })
                    .collect();
                let job = ModelJob {
                    lakehouse: self.clone(),
                    project: project.clone(),
                    dag: dag.clone(),
                    index: i,
                    inputs,
                    params: params.clone(),
                    at: at.clone(),
                    branch: branch.to_string(),
                    sink: sink.clone(),
                    cache: Some((
                        run_cache.clone(),
                        keys[i].0.clone(),
                        reuse,
                        keys[i].1.clone(),
                    )),
                };
                let started = ModelRun {
                    name: project.models[i].name.clone(),
                    kind: match project.models[i].kind {
                        ModelKind::Python { .. } => "python".into(),
                        ModelKind::Sql { .. } => "sql".into(),
                    },
                    status: "running".into(),
                    ..ModelRun::default()
                };
                progress(&started);
                running.spawn(async move {
                    let clock = Instant::now();
                    let logs = Arc::new(Mutex::new(Vec::new()));
                    let result = job.run(logs.clone()).await;
                    let mut run = started;
                    run.ms = clock.elapsed().as_secs_f64() * 1000.0;
                    run.logs = std::mem::take(&mut *logs.lock().expect("logs"));
                    (i, run, result)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (i, mut run, result) = match joined {
                Ok(done) => done,
                Err(e) if e.is_cancelled() => continue, // stopped after another model failed
                Err(e) => return Err(Error::internal(format!("a model task failed: {e}"))),
            };
            match result {
                Ok(done) => {
                    run.status = "ok".into();
                    run.rows = done
                        .produced
                        .batches
                        .iter()
                        .map(|b| b.num_rows() as u64)
                        .sum();
                    run.table = done.table;
                    run.commit = done.commit;
                    run.cache_hit = done.cache_hit;
                    produced[i] = Some(Arc::new(done.produced));
                    for child in dag.children(i) {
                        waiting[child] -= 1;
                        if waiting[child] == 0 {
                            ready.push(child);
                        }
                    }
                }
                Err(e) => {
                    run.status = "failed".into();
                    run.error = Some(e.message.clone());
                    if failure.is_none() {
                        failure = Some(Error::new(
                            e.kind(),
                            format!("model `{}` failed: {}", run.name, e.message),
                        ));
                        running.abort_all();
                    }
                }
            }
            progress(&run);
            record.models.push(run);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        for expectation in &project.expectations {
            let clock = Instant::now();
            let mut run = ModelRun {
                name: expectation.name.clone(),
                kind: "expectation".into(),
                status: "running".into(),
                ..ModelRun::default()
            };
            progress(&run);
            let logs = Arc::new(Mutex::new(Vec::new()));
            let job = ModelJob {
                lakehouse: self.clone(),
                project: project.clone(),
                dag: dag.clone(),
                index: usize::MAX,
                inputs: Vec::new(),
                params: params.clone(),
                at: at.clone(),
                branch: branch.to_string(),
                sink: sink.clone(),
                cache: None,
            };
            let result = job.expect(expectation, &produced, logs.clone()).await;
            run.ms = clock.elapsed().as_secs_f64() * 1000.0;
            run.logs = std::mem::take(&mut *logs.lock().expect("logs"));
            run.status = if result.is_ok() { "ok" } else { "failed" }.into();
            run.error = result.as_ref().err().map(|e| e.message.clone());
            progress(&run);
            record.models.push(run);
            result?;
        }
        Ok(())
    }

    /// Per model: the run-cache key, and (for models stored with `replace`) the table's
    /// metadata now, which a hit must match.
    async fn cache_keys(
        &self,
        project: &Project,
        dag: &Dag,
        params: &serde_json::Value,
        start: &basin_catalog::Resolved,
    ) -> Result<Vec<(String, Option<String>)>> {
        let mut keys: Vec<Option<(String, Option<String>)>> = vec![None; project.models.len()];
        for &i in &dag.order {
            let model = &project.models[i];
            let mut parts: Vec<String> = vec![model.name.clone(), params.to_string()];
            match &model.kind {
                ModelKind::Sql { sql } => parts.push(sql.clone()),
                ModelKind::Python {
                    declaration,
                    source,
                } => {
                    parts.push(source.clone());
                    parts.push(declaration.function.clone());
                    parts.push(
                        env_spec(declaration, Some(&project.python), &project.pip, &[]).hash(),
                    );
                }
            }
            parts.push(format!("{:?} {:?}", model.materialize, model.partition_by));
            for ((param, input), source) in model.inputs.iter().zip(&dag.inputs[i]) {
                parts.push(format!("{param} {input:?}"));
                parts.push(match source {
                    Source::Model(m) => keys[*m].as_ref().expect("inputs come first").0.clone(),
                    Source::Table(t) => self.metadata_location(start, t).await?.unwrap_or_default(),
                });
            }
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let table = match model.materialize {
                Some(basin_ingest::Mode::Replace) => {
                    self.metadata_location(start, &format!("{}.{}", project.namespace, model.name))
                        .await?
                }
                _ => None,
            };
            keys[i] = Some((cache::key(&refs), table));
        }
        Ok(keys
            .into_iter()
            .map(|k| k.expect("every model is ordered"))
            .collect())
    }

    /// A table's `metadata.json` at `at` (None when there is no such table).
    async fn metadata_location(
        &self,
        at: &basin_catalog::Resolved,
        table: &str,
    ) -> Result<Option<String>> {
        match self
            .catalog()
            .content(at, &basin_catalog::Key::table(table)?)
            .await?
        {
            Some(basin_catalog::Content::Table { metadata_location }) => {
                Ok(Some(metadata_location))
            }
            _ => Ok(None),
        }
    }

    async fn save_run(&self, record: &RunRecord) -> Result<()> {
        let text = serde_json::to_string(record)
            .map_err(|e| Error::internal(format!("run record: {e}")))?;
        self.catalog()
            .store()
            .save_run(&record.id, record.started_at_ms, &text)
            .await
    }

    /// The newest runs, newest first.
    pub async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.catalog()
            .store()
            .runs(limit)
            .await?
            .iter()
            .map(|t| {
                serde_json::from_str(t).map_err(|e| Error::internal(format!("run record: {e}")))
            })
            .collect()
    }

    /// The run whose id starts with `prefix`.
    pub async fn show_run(&self, prefix: &str) -> Result<RunRecord> {
        let found = self.catalog().store().runs_with_prefix(prefix).await?;
        match found.as_slice() {
            [one] => {
                serde_json::from_str(one).map_err(|e| Error::internal(format!("run record: {e}")))
            }
            [] => Err(Error::not_found(format!("no run `{prefix}`"))
                .with_hint("list runs with `basin runs ls`")),
            _ => Err(Error::invalid(format!("`{prefix}` names several runs"))
                .with_hint("give more of the id")),
        }
    }
}

/// One model's execution, owned by its task.
struct ModelJob {
    lakehouse: Lakehouse,
    project: Arc<Project>,
    dag: Arc<Dag>,
    index: usize,
    inputs: Vec<Option<Arc<Produced>>>,
    params: Arc<serde_json::Value>,
    /// The run branch's commit the run started from: where table inputs are read.
    at: String,
    branch: String,
    sink: RunSink,
    /// The run cache, this model's key, whether a hit may be used, and its table's
    /// metadata location at the start of the run.
    cache: Option<(cache::RunCache, String, bool, Option<String>)>,
}

impl ModelJob {
    /// The earlier output, when the cache holds one this run may use.
    fn cached(&self) -> Option<ModelDone> {
        let (cache, key, reuse, location) = self.cache.as_ref()?;
        let model = &self.project.models[self.index];
        if !*reuse || model.materialize == Some(basin_ingest::Mode::Append) {
            return None;
        }
        let (entry, schema, batches) = cache.get(key)?;
        if entry.metadata_location != *location {
            return None; // the stored table changed since (or was never merged)
        }
        let table = model
            .materialize
            .map(|_| format!("{}.{}", self.project.namespace, model.name));
        Some(ModelDone {
            produced: Produced { schema, batches },
            table,
            commit: None,
            cache_hit: true,
        })
    }

    async fn run(&self, logs: Arc<Mutex<Vec<String>>>) -> Result<ModelDone> {
        if let Some(done) = self.cached() {
            return Ok(done);
        }
        let model = &self.project.models[self.index];

        let produced = match &model.kind {
            ModelKind::Sql { sql } => self.sql(sql).await?,
            ModelKind::Python {
                declaration,
                source,
            } => {
                let sources: Vec<(String, ModelInput, Option<Arc<Produced>>)> = model
                    .inputs
                    .iter()
                    .zip(&self.inputs)
                    .map(|((p, i), produced)| (p.clone(), i.clone(), produced.clone()))
                    .collect();
                match self
                    .python(&model.name, declaration, source, &sources, logs)
                    .await?
                {
                    Output::Table { schema, batches } => Produced { schema, batches },
                    _ => {
                        return Err(Error::invalid(format!(
                            "model `{}` returned no table",
                            model.name
                        ))
                        .with_hint("a model returns a pyarrow Table or a DataFrame"));
                    }
                }
            }
        };
        if let Some(mode) = model.materialize {
            let table = format!("{}.{}", self.project.namespace, model.name);
            let file = write_ipc(&produced)?;
            let mut import = ImportRequest::new(
                vec![file.path().display().to_string()],
                &table,
                &self.branch,
            );
            import.format = Some(Format::Arrow);
            import.mode = mode;
            import.partition_by = model.partition_by.clone();
            let report = self.lakehouse.import(import, None).await?;
            let stored = self
                .lakehouse
                .catalog()
                .resolve(&format!("{}@{}", self.branch, report.commit))
                .await?;
            let location = self.lakehouse.metadata_location(&stored, &table).await?;
            self.remember(&produced, location);
            return Ok(ModelDone {
                produced,
                table: Some(table),
                commit: Some(report.commit),
                cache_hit: false,
            });
        }
        self.remember(&produced, None);
        Ok(ModelDone {
            produced,
            table: None,
            commit: None,
            cache_hit: false,
        })
    }

    /// Keeps an output for later runs (failing to only costs a re-run later).
    fn remember(&self, produced: &Produced, metadata_location: Option<String>) {
        if let Some((cache, key, _, _)) = &self.cache {
            let entry = cache::Entry {
                model: self.project.models[self.index].name.clone(),
                rows: produced.batches.iter().map(|b| b.num_rows() as u64).sum(),
                metadata_location,
            };
            if let Err(e) = cache.put(key, &entry, &produced.schema, &produced.batches) {
                tracing::warn!("{e}");
            }
        }
    }

    /// A SQL model: DataFusion over the run's start, with upstream outputs as tables.
    async fn sql(&self, sql: &str) -> Result<Produced> {
        let lakehouse = &self.lakehouse;
        let at = lakehouse.catalog().resolve(&self.at).await?;
        let session =
            basin_sql::Session::new(lakehouse.tables(), &at, Some(&self.project.namespace)).await?;
        let model = &self.project.models[self.index];
        for (source, produced) in self.dag.inputs[self.index].iter().zip(&self.inputs) {
            if let (Source::Model(m), Some(p)) = (source, produced) {
                let name = &self.project.models[*m].name;
                let table = MemTable::try_new(p.schema.clone(), vec![p.batches.clone()])
                    .map_err(|e| Error::internal(format!("{name}: {e}")))?;
                let reference = datafusion::sql::TableReference::full(
                    basin_sql::CATALOG,
                    self.project.namespace.as_str(),
                    name.as_str(),
                );
                // Its table (if materialized) is not on the run's start commit: the output is.
                let _ = session.context().deregister_table(reference.clone());
                session
                    .context()
                    .register_table(reference, Arc::new(table))
                    .map_err(|e| Error::internal(format!("{name}: {e}")))?;
            }
        }
        let result = session.run(sql).await.map_err(|e| {
            Error::new(e.kind(), format!("{}: {}", model.file.display(), e.message))
        })?;
        Ok(Produced {
            schema: result.schema,
            batches: result.batches,
        })
    }

    async fn python(
        &self,
        name: &str,
        declaration: &basin_runtime::Declaration,
        source: &str,
        inputs: &[(String, ModelInput, Option<Arc<Produced>>)],
        logs: Arc<Mutex<Vec<String>>>,
    ) -> Result<Output> {
        let lakehouse = &self.lakehouse;
        let runtime = lakehouse.runtime()?;
        let spec = env_spec(
            declaration,
            Some(&self.project.python),
            &self.project.pip,
            &[],
        );
        let env = runtime.environment(&spec).await?;
        let mut workspace = runtime.workspace()?;
        let mut session = None;
        for (param, input, produced) in inputs {
            match produced {
                Some(p) => {
                    let (schema, batches) = select(p, input).await?;
                    let stream = futures::stream::iter(batches.into_iter().map(Ok));
                    workspace.write_input(param, schema, stream).await?;
                }
                None => {
                    if session.is_none() {
                        let at = lakehouse.catalog().resolve(&self.at).await?;
                        session = Some(
                            basin_sql::Session::new(
                                lakehouse.tables(),
                                &at,
                                Some(&self.project.namespace),
                            )
                            .await?,
                        );
                    }
                    let sql = input_query(input, declaration, Some(&self.project.namespace))?;
                    let (schema, batches) =
                        session.as_ref().expect("a session").stream(&sql).await?;
                    let (schema, batches) = plain(schema, batches);
                    workspace.write_input(param, schema, batches).await?;
                }
            }
        }
        let model = name.to_string();
        let (sink, seen) = (self.sink.clone(), logs.clone());
        let output: basin_runtime::OutputSink = Arc::new(move |stream, line| {
            sink(&model, stream, line);
            let mut logs = seen.lock().expect("logs");
            if logs.len() < MAX_LOG_LINES {
                logs.push(line.to_string());
            }
        });
        let invocation = Invocation {
            function: format!("{}:{}", self.project.name, name),
            target: Target::Python {
                file: declaration.file.clone(),
                name: declaration.function.clone(),
                source: source.to_string(),
            },
            env,
            preload: spec.packages.keys().cloned().collect(),
            event: serde_json::Value::Null,
            params: (*self.params).clone(),
            secrets: secrets_for(declaration)?,
            limits: Limits {
                timeout: declaration
                    .timeout_seconds
                    .map(std::time::Duration::from_secs_f64),
                memory_bytes: declaration.memory_bytes,
                internet: declaration.internet,
            },
            concurrency: declaration.concurrency,
        };
        let finished = runtime.invoke(workspace, invocation, output).await;
        lakehouse
            .catalog()
            .store()
            .record_invocation(&finished.record)
            .await?;
        // Table batches map the output file, which stays readable after its folder goes.
        finished.result
    }

    /// An expectation: a Python function over model outputs (or tables) returning a bool.
    async fn expect(
        &self,
        expectation: &project::ExpectationDef,
        produced: &[Option<Arc<Produced>>],
        logs: Arc<Mutex<Vec<String>>>,
    ) -> Result<()> {
        let declaration = &expectation.declaration;
        let inputs: Vec<(String, ModelInput, Option<Arc<Produced>>)> = declaration
            .inputs
            .iter()
            .map(|(p, i)| {
                let qualified = if i.name.contains('.') {
                    i.name.clone()
                } else {
                    format!("{}.{}", self.project.namespace, i.name)
                };
                let model =
                    self.project.models.iter().position(|m| {
                        format!("{}.{}", self.project.namespace, m.name) == qualified
                    });
                (
                    p.clone(),
                    i.clone(),
                    model.and_then(|m| produced[m].clone()),
                )
            })
            .collect();
        let result = self
            .python(
                &expectation.name,
                declaration,
                &expectation.source,
                &inputs,
                logs,
            )
            .await?;
        match result {
            Output::Json(serde_json::Value::Bool(true)) => Ok(()),
            Output::Json(serde_json::Value::Bool(false)) => Err(Error::invalid(format!(
                "expectation `{}` failed",
                expectation.name
            ))
            .with_hint(format!(
                "{}:{} returned False",
                declaration.file.display(),
                declaration.line
            ))),
            other => Err(Error::invalid(format!(
                "expectation `{}` returned {other:?}, not True or False",
                expectation.name
            ))),
        }
    }
}

/// A model output as an Arrow IPC file, for the importer.
fn write_ipc(produced: &Produced) -> Result<tempfile::NamedTempFile> {
    let file = tempfile::Builder::new()
        .suffix(".arrow")
        .tempfile()
        .map_err(|e| Error::io(format!("cannot create a temporary file: {e}")))?;
    {
        let mut writer = arrow::ipc::writer::FileWriter::try_new(
            std::io::BufWriter::new(file.as_file()),
            &produced.schema,
        )
        .map_err(|e| Error::internal(format!("model output: {e}")))?;
        for batch in &produced.batches {
            writer
                .write(batch)
                .map_err(|e| Error::internal(format!("model output: {e}")))?;
        }
        writer
            .finish()
            .map_err(|e| Error::internal(format!("model output: {e}")))?;
    }
    Ok(file)
}

/// A model output narrowed to an input's columns and filter.
async fn select(produced: &Produced, input: &ModelInput) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    if input.columns.is_none() && input.filter.is_none() {
        return Ok((produced.schema.clone(), produced.batches.clone()));
    }
    let ctx = datafusion::prelude::SessionContext::new();
    let table = MemTable::try_new(produced.schema.clone(), vec![produced.batches.clone()])
        .map_err(|e| Error::internal(format!("{}: {e}", input.name)))?;
    ctx.register_table("input", Arc::new(table))
        .map_err(|e| Error::internal(format!("{}: {e}", input.name)))?;
    let local = ModelInput {
        name: "input".into(),
        ..input.clone()
    };
    let sql = crate::functions::select_sql(&local);
    let frame = ctx
        .sql(&sql)
        .await
        .map_err(|e| Error::invalid(format!("input `{}` (columns/filter): {e}", input.name)))?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame
        .collect()
        .await
        .map_err(|e| Error::invalid(format!("input `{}`: {e}", input.name)))?;
    Ok((schema, batches))
}
