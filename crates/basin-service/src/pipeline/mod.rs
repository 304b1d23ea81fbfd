//! Pipelines: a project's models run in DAG order on a run branch, checked by expectations,
//! and published to the target branch in one merge. A failure leaves the target untouched
//! and keeps the run branch to look at.

mod abandoned;
pub(crate) mod cache;
mod dag;
mod dispatch;
mod execute;
mod handle;
mod incremental;
mod job;
mod project;
mod remote;
mod replay;
mod run;
pub mod scaffold;

use std::collections::BTreeSet;
use std::sync::Arc;

use basin_core::{Error, Result};

pub use dag::{Dag, Source};
pub(crate) use dispatch::{QUEUE_PREFIX, running_queues, work_on};

use crate::lakehouse::refs::RUN_BRANCH_PREFIX;
pub use handle::Pipelines;
pub use project::{ModelDef, ModelKind, Project, resolve_parameters};
pub use remote::RemoteRun;
pub use replay::{ReplayReport, ReplayedOutput};
pub(crate) use run::{Logs, ModelDone, Produced, new_logs};
pub use run::{ModelRun, RunProgress, RunRecord, RunRequest, RunSink, is_pipeline_branch};

use crate::functions::env_spec;

impl Pipelines<'_> {
    /// Runs the project in `request.dir`; see the module docs.
    pub async fn run(
        &self,
        request: RunRequest,
        sink: RunSink,
        progress: RunProgress,
    ) -> Result<RunRecord> {
        let params = resolve_parameters(&request.dir, &request.params)?;
        let sdk = basin_runtime::sdk_folder(&self.lake.tools_dir())?;
        let project = Arc::new(Project::load(&request.dir, &sdk, &params).await?);
        remote::check_restricted(&project, self.lake.settings().build_from_source)?;
        let target = request
            .branch
            .clone()
            .unwrap_or_else(|| self.lake.current_branch());
        let head = self.lake.catalog().resolve(&target).await?;
        head.writable_branch()?;
        let tables: BTreeSet<String> = self
            .lake
            .tables()
            .list(Some(&target))
            .await?
            .into_iter()
            .map(|t| t.table)
            .collect();
        let dag = Arc::new(Dag::build(&project, &tables, &target)?);

        // Time-ordered (the first 12 digits are the start's milliseconds), then 4 random
        // digits so that two runs started in the same millisecond get different ids.
        let uuid = basin_core::ids::ordered();
        let id = format!("{}{}", &uuid[..12], &uuid[28..]);
        let branch = format!("{RUN_BRANCH_PREFIX}{id}");
        self.lake.catalog().create_branch(&branch, &head).await?;
        // Outputs go to the project's namespace; a first run creates it (on the run branch).
        if !self
            .lake
            .namespaces()
            .list(Some(&branch))
            .await?
            .contains(&project.namespace)
        {
            self.lake
                .namespaces()
                .create(&project.namespace, Some(&branch), Default::default())
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
            branch_deleted: false,
            error: None,
            full_refresh: request.full_refresh,
            models: Vec::new(),
            code: project.files.clone(),
        };
        // Held until the record says how the run ended: a record left `running` by a process
        // that died is settled once this lease runs out (`abandoned`).
        let lease = self.hold_run(&id).await?;
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
            Ok(()) => match self.lake.refs().merge(&branch, Some(&target), false).await {
                Ok(merge) => {
                    record.status = "succeeded".into();
                    record.merged_commit = merge.commit;
                    // Everything the run made is on the target now (or it changed nothing):
                    // the branch would only clutter `basin branch ls --all`.
                    if !request.keep_branch {
                        match self.lake.catalog().delete_branch(&branch, None).await {
                            Ok(()) => record.branch_deleted = true,
                            Err(e) => tracing::warn!("run {id}: {branch} stays: {e}"),
                        }
                    }
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
        self.release_run(&id, lease).await;
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
                    // What it reads from outside the lakehouse: secrets' values are part of the
                    // key; a model on the internet depends on more than the key, so never hits.
                    let secrets = crate::functions::secrets_for(
                        declaration,
                        &project.secrets,
                        &self.lake.settings().secrets,
                    )
                    .unwrap_or_default();
                    parts.push(format!("{secrets:?}"));
                    if declaration.internet {
                        parts.push(uuid::Uuid::new_v4().to_string());
                    }
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
            .lake
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
        self.lake
            .catalog()
            .store()
            .save_run(&record.id, record.started_at_ms, &text)
            .await
    }

    /// The newest runs, newest first.
    pub async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.lake
            .catalog()
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
        let found = self.lake.catalog().store().runs_with_prefix(prefix).await?;
        match found.as_slice() {
            [one] => {
                serde_json::from_str(one).map_err(|e| Error::internal(format!("run record: {e}")))
            }
            [] => Err(Error::not_found(format!("no run `{prefix}`"))
                .with_hint("list runs with `basin runs ls`")),
            many => {
                // As git does for an ambiguous prefix: list the candidates.
                let shown = 10;
                let mut lines: Vec<String> = many
                    .iter()
                    .take(shown)
                    .filter_map(|r| serde_json::from_str::<RunRecord>(r).ok())
                    .map(|r| {
                        let started = basin_core::time::shown(r.started_at_ms);
                        format!(
                            "  {}  {}  {}  {started}  {} -> {}",
                            r.id, r.project, r.status, r.branch, r.target
                        )
                    })
                    .collect();
                if many.len() > shown {
                    lines.push("  ...".to_string());
                }
                Err(Error::invalid(format!(
                    "`{prefix}` names several runs:\n{}",
                    lines.join("\n")
                ))
                .with_hint("give more of the id"))
            }
        }
    }
}
