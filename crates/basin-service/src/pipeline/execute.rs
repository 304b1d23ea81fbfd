//! A run's models and expectations executed on its branch: the models in DAG order, each as
//! soon as its inputs are made, then the expectations on what they made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use basin_core::{Error, Result};
use tokio::task::{Id, JoinSet};

use super::Pipelines;
use super::job::ModelJob;
use super::{
    Dag, ModelDone, ModelKind, ModelRun, Produced, Project, RunProgress, RunRecord, RunSink,
    Source, cache, dispatch, new_logs,
};
use crate::Lakehouse;

/// What a model's task hands back: its index, its record so far, and how it ended.
type Done = (usize, ModelRun, Result<ModelDone>);

impl Pipelines<'_> {
    /// Runs the models and then the expectations on `branch`, recording each in `record`;
    /// the first failure stops the run.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn execute(
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
        let mut execution = Execution::plan(
            self.lake, project, dag, params, branch, reuse, sink, progress, &record.id,
        )
        .await?;
        execution.full_refresh = record.full_refresh;
        let (produced, failure) = execution.run_models(record).await?;
        if let Some(queue) = &execution.queue {
            queue.clean().await;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        execution.check_expectations(&produced, record).await
    }
}

/// What every model and expectation of one run shares.
struct Execution<'a> {
    lakehouse: &'a Lakehouse,
    project: &'a Arc<Project>,
    dag: &'a Arc<Dag>,
    params: Arc<serde_json::Value>,
    /// The run branch's commit the run started from: where table inputs are read.
    at: String,
    branch: &'a str,
    sink: RunSink,
    progress: RunProgress,
    run_cache: cache::RunCache,
    /// Per model: its run-cache key and its table's metadata location at the start.
    keys: Vec<(String, Option<String>)>,
    /// Whether a cache hit may be used.
    reuse: bool,
    /// On a shared catalog models go through the queue, to whichever node takes them.
    queue: Option<Arc<dispatch::RunQueue>>,
    /// Incremental models rebuild whole (`--full-refresh`).
    full_refresh: bool,
}

impl<'a> Execution<'a> {
    /// Fixes where run `run` reads from and computes every model's cache key.
    #[allow(clippy::too_many_arguments)]
    async fn plan(
        lakehouse: &'a Lakehouse,
        project: &'a Arc<Project>,
        dag: &'a Arc<Dag>,
        params: &BTreeMap<String, serde_json::Value>,
        branch: &'a str,
        reuse: bool,
        sink: RunSink,
        progress: RunProgress,
        run: &str,
    ) -> Result<Self> {
        let params = Arc::new(serde_json::to_value(params).expect("parameters are JSON"));
        // Table inputs are read at the commit the run starts from, however the branch moves.
        let start = lakehouse.catalog().resolve(branch).await?;
        let at = format!("{branch}@{}", start.commit);
        let keys = lakehouse
            .pipelines()
            .cache_keys(project, dag, &params, &start)
            .await?;
        let run_cache =
            cache::RunCache::new(cache::folder(&lakehouse.root().join(crate::BASIN_DIR)));
        // A principal with grants of its own runs its models here: a node taking a model from
        // the queue reads its inputs as itself.
        let restricted = basin_catalog::actor::current()
            .and_then(|a| a.grants)
            .is_some_and(|g| !g.is_admin());
        let queue = (lakehouse.is_shared() && !restricted)
            .then(|| Arc::new(dispatch::RunQueue::new(lakehouse, run)));
        Ok(Self {
            lakehouse,
            project,
            dag,
            params,
            at,
            branch,
            sink,
            progress,
            run_cache,
            keys,
            reuse,
            queue,
            full_refresh: false,
        })
    }

    /// Runs the models in DAG order, each as soon as its inputs are made, and records each
    /// as it ends. After a failure nothing new starts and what runs is stopped. Returns the
    /// models' outputs and the first failure.
    async fn run_models(
        &self,
        record: &mut RunRecord,
    ) -> Result<(Vec<Option<Arc<Produced>>>, Option<Error>)> {
        let (project, dag) = (self.project, self.dag);
        let n = project.models.len();
        let mut produced: Vec<Option<Arc<Produced>>> = (0..n).map(|_| None).collect();
        let mut waiting: Vec<usize> = (0..n).map(|i| dag.upstream_count(i)).collect();
        let mut ready: Vec<usize> = dag
            .order
            .iter()
            .copied()
            .filter(|&i| waiting[i] == 0)
            .collect();
        let mut running: JoinSet<Done> = JoinSet::new();
        let mut failure = None;
        let mut tasks: BTreeMap<Id, String> = BTreeMap::new();
        loop {
            while let Some(i) = ready.pop() {
                let (task, name) = self.start_model(i, &produced, &mut running);
                tasks.insert(task, name);
            }
            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            let (i, mut run, result) = match joined {
                Ok((_, done)) => done,
                Err(e) if e.is_cancelled() => {
                    // Stopped because another model failed.
                    let run = ModelRun {
                        name: tasks.remove(&e.id()).unwrap_or_default(),
                        status: "cancelled".into(),
                        error: Some("stopped: another model failed".into()),
                        ..ModelRun::default()
                    };
                    self.report(run, record);
                    continue;
                }
                Err(e) => return Err(Error::internal(format!("a model task failed: {e}"))),
            };
            match result {
                Ok(done) => {
                    produced[i] = Some(Arc::new(succeeded(&mut run, done)));
                    for child in dag.children(i) {
                        waiting[child] -= 1;
                        // After a failure nothing new starts; what runs is being stopped.
                        if waiting[child] == 0 && failure.is_none() {
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
            self.report(run, record);
        }
        Ok((produced, failure))
    }

    /// Starts model `i`, its inputs made, in a task of `running`; returns the task's id and
    /// the model's name.
    fn start_model(
        &self,
        i: usize,
        produced: &[Option<Arc<Produced>>],
        running: &mut JoinSet<Done>,
    ) -> (Id, String) {
        let project = self.project;
        let inputs: Vec<Option<Arc<Produced>>> = self.dag.inputs[i]
            .iter()
            .map(|s| match s {
                Source::Model(m) => produced[*m].clone(),
                Source::Table(_) => None,
            })
            .collect();
        let cache = Some((
            self.run_cache.clone(),
            self.keys[i].0.clone(),
            self.reuse,
            self.keys[i].1.clone(),
        ));
        let job = self.job(i, inputs, cache);
        let started = ModelRun {
            name: project.models[i].name.clone(),
            kind: match project.models[i].kind {
                ModelKind::Python { .. } => "python".into(),
                ModelKind::Sql { .. } => "sql".into(),
            },
            status: "running".into(),
            inputs: self.dag.inputs[i]
                .iter()
                .map(|s| match s {
                    Source::Model(m) => project.models[*m].name.clone(),
                    Source::Table(table) => table.clone(),
                })
                .collect(),
            ..ModelRun::default()
        };
        (self.progress)(&started);
        let name = started.name.clone();
        let queue = self.queue.clone();
        let logs = new_logs(self.lakehouse);
        // The model acts as the run's principal, on its own task.
        let actor = basin_catalog::actor::current();
        let task = running.spawn(basin_catalog::actor::carried(actor, async move {
            let clock = Instant::now();
            let mut run = started;
            let result = match &queue {
                Some(queue) => queue.run(&job, logs.clone()).await.map(|(done, node)| {
                    run.node = Some(node);
                    done
                }),
                None => job.run(logs.clone()).await,
            };
            run.ms = clock.elapsed().as_secs_f64() * 1000.0;
            run.logs = logs.lock().expect("logs").take_lines();
            (i, run, result)
        }));
        (task.id(), name)
    }

    /// Runs the project's expectations, in order, on what the models made; the first that
    /// fails ends the run.
    async fn check_expectations(
        &self,
        produced: &[Option<Arc<Produced>>],
        record: &mut RunRecord,
    ) -> Result<()> {
        for expectation in &self.project.expectations {
            let clock = Instant::now();
            let mut run = ModelRun {
                name: expectation.name.clone(),
                kind: "expectation".into(),
                status: "running".into(),
                ..ModelRun::default()
            };
            (self.progress)(&run);
            let logs = new_logs(self.lakehouse);
            let job = self.job(usize::MAX, Vec::new(), None);
            let result = job.expect(expectation, produced, logs.clone()).await;
            run.ms = clock.elapsed().as_secs_f64() * 1000.0;
            run.logs = logs.lock().expect("logs").take_lines();
            run.status = if result.is_ok() { "ok" } else { "failed" }.into();
            run.error = result.as_ref().err().map(|e| e.message.clone());
            self.report(run, record);
            result?;
        }
        Ok(())
    }

    /// The job of model `index` (`usize::MAX` for an expectation).
    fn job(
        &self,
        index: usize,
        inputs: Vec<Option<Arc<Produced>>>,
        cache: Option<(cache::RunCache, String, bool, Option<String>)>,
    ) -> ModelJob {
        ModelJob {
            lakehouse: self.lakehouse.clone(),
            project: self.project.clone(),
            dag: self.dag.clone(),
            index,
            inputs,
            params: self.params.clone(),
            at: self.at.clone(),
            branch: self.branch.to_string(),
            sink: self.sink.clone(),
            cache,
            full_refresh: self.full_refresh,
        }
    }

    /// Reports how a model or expectation ended, and keeps it in the run's record.
    fn report(&self, run: ModelRun, record: &mut RunRecord) {
        (self.progress)(&run);
        record.models.push(run);
    }
}

/// Fills in a model's record from what it made; returns its output.
fn succeeded(run: &mut ModelRun, done: ModelDone) -> Produced {
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
    done.produced
}
