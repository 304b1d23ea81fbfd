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
use super::{
    ModelDone, ModelKind, Produced, Project, RunSink, Source, cache, incremental, project,
};
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
    /// Incremental models rebuild whole (`basin run --full-refresh`).
    pub(super) full_refresh: bool,
}

impl ModelJob {
    /// The earlier output, when the cache holds one this run may use.
    pub(super) fn cached(&self) -> Option<ModelDone> {
        let (cache, key, reuse, location) = self.cache.as_ref()?;
        let model = &self.project.models[self.index];
        // An incremental model's output depends on its cursor too: it always runs.
        if !*reuse
            || model.materialize == Some(basin_ingest::Mode::Append)
            || model.incremental.is_some()
        {
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

    /// The lineage its output's commit records: this model, and the tables it read.
    fn lineage(&self) -> String {
        let model = &self.project.models[self.index];
        let name = format!("{}.{}", self.project.name, model.name);
        basin_table::lineage::Writer::new("model", name, self.read_tables(self.index)).property()
    }

    /// The tables model `index` reads, through the models it reads that store no table.
    fn read_tables(&self, index: usize) -> Vec<String> {
        let mut tables = Vec::new();
        for source in &self.dag.inputs[index] {
            match source {
                Source::Table(table) => tables.push(table.clone()),
                Source::Model(m) => match self.project.models[*m].materialize {
                    Some(_) => tables.push(format!(
                        "{}.{}",
                        self.project.namespace, self.project.models[*m].name
                    )),
                    None => tables.extend(self.read_tables(*m)),
                },
            }
        }
        tables.sort();
        tables.dedup();
        tables
    }

    /// A table input's name with the project's namespace when it names none.
    fn qualified(&self, name: &str) -> String {
        match name.contains('.') {
            true => name.to_string(),
            false => format!("{}.{name}", self.project.namespace),
        }
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
        let window = match &model.incremental {
            Some(_) => Some(self.window().await?),
            None => None,
        };
        let produced = match &model.kind {
            ModelKind::Sql { sql } => self.sql(sql, window.as_ref()).await?,
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
                    .python(
                        &model.name,
                        declaration,
                        source,
                        &sources,
                        window.as_ref(),
                        logs,
                    )
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
            let (mode, rebuilt, properties) = match (&window, &model.incremental) {
                (Some(window), Some(incremental)) => {
                    let (mode, stored) = self
                        .incremental_output(&produced, window, incremental, &table)
                        .await?;
                    (mode, Some(stored), window.properties())
                }
                _ => (mode, None, Default::default()),
            };
            let file = write_ipc(rebuilt.as_ref().unwrap_or(&produced))?;
            let mut import = ImportRequest::new(
                vec![file.path().display().to_string()],
                &table,
                &self.branch,
            );
            import.format = Some(Format::Arrow);
            import.mode = mode;
            import.partition_by = model.partition_by.clone();
            import.properties = properties;
            import
                .properties
                .insert(basin_table::lineage::PROPERTY.to_string(), self.lineage());
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
                // The models that read an incremental model read what it stored: the whole
                // table after a rebuild or a merge by key, the appended rows after an append
                // (without the change columns).
                produced: rebuilt.unwrap_or(produced),
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

    /// The snapshots an incremental model reads its table inputs between.
    async fn window(&self) -> Result<incremental::Window> {
        let model = &self.project.models[self.index];
        let tables: Vec<String> = self.dag.inputs[self.index]
            .iter()
            .filter_map(|source| match source {
                Source::Table(name) => Some(name.clone()),
                Source::Model(_) => None,
            })
            .collect();
        let at = self.lakehouse.catalog().resolve(&self.at).await?;
        let output = format!("{}.{}", self.project.namespace, model.name);
        incremental::Window::read(&self.lakehouse, &at, &output, &tables, self.full_refresh).await
    }

    /// What an incremental model stores, and how: everything it produced on a rebuild
    /// (replacing the table), appended without a key, or merged by key into the table as the
    /// run started (the whole table replaced).
    async fn incremental_output(
        &self,
        produced: &Produced,
        window: &incremental::Window,
        declared: &incremental::Incremental,
        table: &str,
    ) -> Result<(basin_ingest::Mode, Produced)> {
        let (upserts, deletes) = incremental::split(produced)?;
        if window.rebuild {
            return Ok((basin_ingest::Mode::Replace, upserts));
        }
        if declared.key.is_empty() {
            return Ok((basin_ingest::Mode::Append, upserts));
        }
        let at = self.lakehouse.catalog().resolve(&self.at).await?;
        let session = basin_sql::Session::plain_strings(
            self.lakehouse.sql(),
            self.lakehouse.iceberg_tables(),
            &at,
            None,
        )
        .await?;
        let existing = session.run(&format!("SELECT * FROM {table}")).await?;
        let existing = Produced {
            schema: existing.schema,
            batches: existing.batches,
        };
        let merged = incremental::merge(&existing, &upserts, &deletes, &declared.key)?;
        Ok((basin_ingest::Mode::Replace, merged))
    }

    /// Keeps an output for later runs (failing to only costs a re-run later).
    pub(super) fn remember(&self, produced: &Produced, metadata_location: Option<String>) {
        if self.project.models[self.index].incremental.is_some() {
            return; // never served from the cache (see `cached`)
        }
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

    /// A SQL model: DataFusion over the run's start, with upstream outputs as tables (and,
    /// for an incremental model, its table inputs' changes in place of the tables).
    async fn sql(&self, sql: &str, window: Option<&incremental::Window>) -> Result<Produced> {
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
        if let Some(window) = window {
            for ((_, input), source) in model.inputs.iter().zip(&self.dag.inputs[self.index]) {
                let Source::Table(qualified) = source else {
                    continue;
                };
                let plain = ModelInput {
                    columns: None,
                    filter: None,
                    ..input.clone()
                };
                let changes = session.run(&window.changes_sql(&plain, qualified)).await?;
                let table = MemTable::try_new(changes.schema, vec![changes.batches])
                    .map_err(|e| Error::internal(format!("{qualified}: {e}")))?;
                let (namespace, name) = qualified.split_once('.').unwrap_or(("", qualified));
                session.shadow(namespace, name, Arc::new(table))?;
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
        window: Option<&incremental::Window>,
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
        // A model's result is read as batches: passed-through columns come back by reference.
        workspace.tables_by_reference();
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
                    let sql = match window {
                        Some(window) => window.changes_sql(input, &self.qualified(&input.name)),
                        None => input_query(input, declaration, Some(&self.project.namespace))?,
                    };
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
                fresh: declaration.reuse == Some(false),
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
                None,
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
