//! One model's (or expectation's) execution: inputs in, the function or query run, the
//! output stored and remembered for the run cache.

use super::Logs;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use basin_core::{Error, Result};
use basin_ingest::{Format, ImportRequest};
use basin_runtime::{Invocation, Limits, ModelInput, Output, Target};
use datafusion::datasource::MemTable;

use super::dag::Dag;
use super::{ModelDone, ModelKind, Produced, Project, RunSink, Source, cache, project};
use crate::Lakehouse;
use crate::functions::{env_spec, input_query, secrets_for, strip_views_and_metadata};

/// One model's execution, owned by its task.
pub(super) struct ModelJob {
    pub(super) lakehouse: Lakehouse,
    pub(super) project: Arc<Project>,
    pub(super) dag: Arc<Dag>,
    pub(super) index: usize,
    pub(super) inputs: Vec<Option<Arc<Produced>>>,
    pub(super) params: Arc<serde_json::Value>,
    /// The run branch's commit the run started from: where table inputs are read.
    pub(super) at: String,
    pub(super) branch: String,
    pub(super) sink: RunSink,
    /// The run cache, this model's key, whether a hit may be used, and its table's
    /// metadata location at the start of the run.
    pub(super) cache: Option<(cache::RunCache, String, bool, Option<String>)>,
}

impl ModelJob {
    /// The earlier output, when the cache holds one this run may use.
    pub(super) fn cached(&self) -> Option<ModelDone> {
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
            metadata_location: location.clone(),
        })
    }

    /// Whether the model reads secrets, which are this node's environment variables.
    pub(super) fn needs_secrets(&self) -> bool {
        // A Python model gets its own secrets and the project's (`secrets_for`); SQL none.
        matches!(&self.project.models[self.index].kind, ModelKind::Python { declaration, .. }
            if !declaration.secrets.is_empty() || !self.project.secrets.is_empty())
    }

    pub(super) async fn run(&self, logs: Logs) -> Result<ModelDone> {
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
            import.message = Some(format!(
                "{}: model {} of {} wrote {table} ({})",
                self.branch,
                model.name,
                self.project.name,
                mode.as_str()
            ));
            let shown = file.path().display().to_string();
            let report = self.lakehouse.import(import, None).await.map_err(|e| {
                let message = e.message.replace(&shown, "its output");
                let hint = e.hint.clone();
                let e = Error::new(e.kind(), format!("storing `{table}`: {message}"));
                match hint {
                    Some(h) => e.with_hint(h),
                    None => e,
                }
            })?;
            let stored = self
                .lakehouse
                .catalog()
                .resolve(&format!("{}@{}", self.branch, report.commit))
                .await?;
            let location = self
                .lakehouse
                .pipelines()
                .metadata_location(&stored, &table)
                .await?;
            self.remember(&produced, location.clone());
            return Ok(ModelDone {
                produced,
                table: Some(table),
                commit: Some(report.commit),
                cache_hit: false,
                metadata_location: location,
            });
        }
        self.remember(&produced, None);
        Ok(ModelDone {
            produced,
            table: None,
            commit: None,
            cache_hit: false,
            metadata_location: None,
        })
    }

    /// Keeps an output for later runs (failing to only costs a re-run later).
    pub(super) fn remember(&self, produced: &Produced, metadata_location: Option<String>) {
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
        let session = basin_sql::Session::new(
            lakehouse.sql(),
            lakehouse.iceberg_tables(),
            &at,
            Some(&self.project.namespace),
        )
        .await?
        .with_namespace_option(basin_sql::NamespaceOption::Fixed);
        let model = &self.project.models[self.index];
        for (source, produced) in self.dag.inputs[self.index].iter().zip(&self.inputs) {
            if let (Source::Model(m), Some(p)) = (source, produced) {
                let name = &self.project.models[*m].name;
                let table = MemTable::try_new(p.schema.clone(), vec![p.batches.clone()])
                    .map_err(|e| Error::internal(format!("{name}: {e}")))?;
                // Its stored table (if any) is the one on the commit read: the output is newer.
                session.shadow(&self.project.namespace, name, Arc::new(table))?;
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
        logs: Logs,
    ) -> Result<Output> {
        let lakehouse = &self.lakehouse;
        let runtime = lakehouse.runtime()?;
        let spec = env_spec(
            declaration,
            Some(&self.project.python),
            &self.project.pip,
            &[],
        );
        // Said as the model's line (not kept in its logs): the first run in a lakehouse
        // builds its environments, which takes a while; later runs find them cached.
        if !runtime.envs().is_ready(&spec) {
            (self.sink)(name, basin_runtime::Stream::Stderr, &spec.building_note());
        }
        let env = runtime.environment(&spec).await?;
        let preload = declaration.preload(&spec);
        runtime.warm(&env, &preload, declaration.internet);
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
                            basin_sql::Session::plain_strings(
                                lakehouse.sql(),
                                lakehouse.iceberg_tables(),
                                &at,
                                Some(&self.project.namespace),
                            )
                            .await?
                            .with_namespace_option(basin_sql::NamespaceOption::Fixed),
                        );
                    }
                    let sql = input_query(input, declaration, Some(&self.project.namespace))?;
                    let (schema, batches) =
                        session.as_ref().expect("a session").stream(&sql).await?;
                    let (schema, batches) = strip_views_and_metadata(schema, batches);
                    workspace.write_input(param, schema, batches).await?;
                }
            }
        }
        let model = name.to_string();
        let (sink, seen) = (self.sink.clone(), logs.clone());
        let output: basin_runtime::OutputSink = Arc::new(move |stream, line| {
            sink(&model, stream, line);
            seen.lock().expect("logs").push(line);
        });
        let invocation = Invocation {
            function: format!("{}:{}", self.project.name, name),
            target: Target::Python {
                file: declaration.file.clone(),
                name: declaration.function.clone(),
                source: source.to_string(),
            },
            env,
            preload,
            event: serde_json::Value::Null,
            params: (*self.params).clone(),
            secrets: secrets_for(
                declaration,
                &self.project.secrets,
                &self.lakehouse.settings().secrets,
            )?,
            limits: Limits {
                timeout: declaration
                    .timeout_seconds
                    .map(std::time::Duration::from_secs_f64),
                memory_bytes: declaration.memory_bytes,
                internet: declaration.internet,
                per_event: None,
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
    pub(super) async fn expect(
        &self,
        expectation: &project::ExpectationDef,
        produced: &[Option<Arc<Produced>>],
        logs: Logs,
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
        .map_err(|e| Error::io_with("cannot create a temporary file", e))?;
    basin_runtime::write_ipc_file(file.path(), &produced.schema, &produced.batches)?;
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
