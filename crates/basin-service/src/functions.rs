//! Invoking one function against the lakehouse (`basin invoke`), and what invocations cost
//! (`basin usage`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use basin_catalog::Key;
use basin_core::{Error, InvocationRecord, Result};
use basin_ingest::{Format, ImportReport, ImportRequest, Mode};
use basin_runtime::{
    Declaration, EnvSpec, Invocation, Limits, ModelInput, Output, OutputSink, Target,
};
use basin_table::lineage::Writer;
use futures::StreamExt;

use crate::Lakehouse;

/// The pyarrow Basin adds to environments that do not pin their own: the worker reads and
/// writes tables with it.
pub const PYARROW: &str = "26.0.1";

/// What to invoke, with what, and where its output goes.
#[derive(Clone, Debug, Default)]
pub struct InvokeRequest {
    /// `FILE.py:FUNCTION`, or the path of a program that speaks docs/protocol.md.
    pub target: String,
    /// The ref the inputs are read at (default: the current branch).
    pub at: Option<String>,
    pub event: serde_json::Value,
    /// Extra or overriding inputs: parameter name -> `ns.table`.
    pub inputs: Vec<(String, String)>,
    /// Store a table output in this table.
    pub to: Option<String>,
    pub mode: Mode,
    /// The branch `to` is written on (default: the current branch).
    pub branch: Option<String>,
    /// For programs (Python functions declare these in their decorator).
    pub python: Option<String>,
    pub pip: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub memory_bytes: Option<u64>,
    pub internet: bool,
}

/// The result of `basin invoke`.
#[derive(Debug)]
pub struct InvokeReport {
    pub record: InvocationRecord,
    pub output: Output,
    /// The commit that stored the output, with `--to`.
    pub stored: Option<ImportReport>,
    pub env_hash: String,
    pub env_built: bool,
    pub unconfined: Vec<String>,
}

/// Told what Basin is doing before the function runs (e.g. building its environment).
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

/// Invoking one function against the lakehouse (`basin invoke`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::functions`].
#[derive(Clone, Copy)]
pub struct Functions<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Invoking one function: see [`Functions`].
    pub fn functions(&self) -> Functions<'_> {
        Functions { lake: self }
    }
}

impl Functions<'_> {
    /// Runs one function: reads its declaration, resolves its environment, scans its inputs
    /// (projection and filter pushed down), runs it confined, records its metering and,
    /// with `to`, commits its output. A failed function writes nothing.
    pub async fn invoke(
        &self,
        request: InvokeRequest,
        sink: OutputSink,
        notify: Notify,
    ) -> Result<InvokeReport> {
        let (target, declaration) = self.target(&request).await?;
        let spec = env_spec(
            &declaration,
            request.python.as_deref(),
            &BTreeMap::new(),
            &request.pip,
        );
        let runtime = self.lake.runtime()?;
        let envs = runtime.envs();
        if !envs.is_ready(&spec) {
            notify(&spec.building_note());
        }
        let env = runtime.environment(&spec).await?;
        let preload = declaration.preload(&spec);
        runtime.warm(&env, &preload, request.internet || declaration.internet);
        let secrets = secrets_for(&declaration, &[], &self.lake.settings().secrets)?;

        // Inputs, scanned at one commit of the ref.
        let mut inputs = declaration.inputs.clone();
        for (param, table) in &request.inputs {
            inputs.insert(
                param.clone(),
                ModelInput {
                    name: table.clone(),
                    columns: None,
                    filter: None,
                },
            );
        }
        let mut workspace = runtime.workspace()?;
        // Without `--to` only the batches are read: passed-through columns may come back
        // by reference. With it, the output file is imported, so it must hold them all.
        if request.to.is_none() {
            workspace.tables_by_reference();
        }
        if !inputs.is_empty() {
            let at = self.lake.resolve(request.at.as_deref()).await?;
            let session = basin_sql::Session::plain_strings(
                self.lake.sql(),
                self.lake.iceberg_tables(),
                &at,
                None,
            )
            .await?
            .with_namespace_option(basin_sql::NamespaceOption::Fixed);
            for (param, input) in &inputs {
                let sql = input_query(input, &declaration, None)?;
                let (schema, batches) = session.stream(&sql).await.map_err(|e| {
                    let message = format!("input `{param}` ({}): {}", input.name, e.message);
                    let hint = e.hint.clone();
                    let e = Error::new(e.kind(), message);
                    match hint {
                        Some(h) => e.with_hint(h),
                        None => e,
                    }
                })?;
                let (schema, batches) = strip_views_and_metadata(schema, batches);
                workspace.write_input(param, schema, batches).await?;
            }
        }

        let invocation = Invocation {
            function: display_name(&request.target),
            target,
            env: env.clone(),
            preload,
            event: request.event.clone(),
            params: serde_json::Value::Null,
            secrets,
            limits: Limits {
                timeout: request
                    .timeout
                    .or(declaration.timeout_seconds.map(Duration::from_secs_f64)),
                memory_bytes: request.memory_bytes.or(declaration.memory_bytes),
                internet: request.internet || declaration.internet,
                per_event: None,
                fresh: declaration.reuse == Some(false),
            },
            concurrency: declaration.concurrency,
        };
        let finished = runtime.invoke(workspace, invocation, sink).await;
        self.lake
            .catalog()
            .store()
            .record_invocation(&finished.record)
            .await?;
        let output_file = finished.output_file();
        let output = finished.result?;
        let stored = match (&request.to, &output, output_file) {
            (None, ..) => None,
            (Some(table), Output::Table { .. }, Some(file)) => {
                let reads = inputs.values().map(|i| i.name.clone()).collect();
                Some(self.store_output(&request, table, &file, reads).await?)
            }
            (Some(table), ..) => {
                return Err(Error::invalid(format!(
                    "function `{}` returned no table, so there is nothing to store in `{table}`",
                    finished.record.function
                ))
                .with_hint("return a pyarrow Table or a DataFrame, or leave out --to"));
            }
        };
        Ok(InvokeReport {
            record: finished.record,
            output,
            stored,
            env_hash: env.hash,
            env_built: env.built,
            unconfined: finished.unconfined,
        })
    }

    async fn target(&self, request: &InvokeRequest) -> Result<(Target, Declaration)> {
        if let Some((file, name)) = request.target.rsplit_once(':')
            && file.ends_with(".py")
        {
            let path = std::path::absolute(file)
                .map_err(|e| Error::io_with(format!("cannot resolve {file}"), e))?;
            let source = std::fs::read_to_string(&path).map_err(|e| {
                Error::not_found(format!("cannot read {file}: {e}"))
                    .with_hint("give FILE.py:FUNCTION with a path relative to this folder")
            })?;
            let sdk = basin_runtime::sdk_folder(&self.lake.tools_dir())?;
            let declaration = basin_runtime::read_declarations(&sdk, &path, Some(name))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found(format!("{file} has no function `{name}`")))?;
            let target = Target::Python {
                file: path,
                name: name.to_string(),
                source,
            };
            return Ok((target, declaration));
        }
        let path = PathBuf::from(&request.target);
        if !is_executable(&path) {
            return Err(Error::invalid(format!(
                "`{}` is neither FILE.py:FUNCTION nor an executable program",
                request.target
            ))
            .with_hint("name a Python function as clean.py:orders, or give a program that speaks docs/protocol.md (chmod +x)"));
        }
        let declaration = Declaration {
            function: request.target.clone(),
            file: path.clone(),
            line: 0,
            params: Vec::new(),
            inputs: BTreeMap::new(),
            python: None,
            pip: BTreeMap::new(),
            timeout_seconds: None,
            memory_bytes: None,
            internet: false,
            secrets: Vec::new(),
            concurrency: None,
            reuse: None,
            model: None,
            expectation: false,
            trigger: None,
            to: None,
            batch_size: 1,
            batch_window_seconds: 0.0,
            max_attempts: 3,
            imports: Vec::new(),
        };
        let argv = vec![path.display().to_string()];
        Ok((Target::Program { argv }, declaration))
    }

    async fn store_output(
        &self,
        request: &InvokeRequest,
        table: &str,
        file: &Path,
        reads: Vec<String>,
    ) -> Result<ImportReport> {
        Key::table(table)?;
        let branch = request
            .branch
            .clone()
            .unwrap_or_else(|| self.lake.current_branch());
        let mut import = ImportRequest::new(vec![file.display().to_string()], table, branch);
        import.format = Some(Format::Arrow);
        import.mode = request.mode;
        import.message = Some(format!(
            "function {} wrote {table} ({})",
            request.target,
            request.mode.as_str()
        ));
        import.properties.insert(
            basin_table::lineage::PROPERTY.to_string(),
            Writer::new("function", request.target.clone(), reads).property(),
        );
        self.lake.import(import, None).await
    }
}

/// The environment a function runs in: its declared Python (else `default_python`, else
/// 3.11), `base` packages (a project's), its own pins, `extra` pins, and pyarrow.
pub(crate) fn env_spec(
    declaration: &Declaration,
    default_python: Option<&str>,
    base: &BTreeMap<String, String>,
    extra: &[(String, String)],
) -> EnvSpec {
    let python = declaration
        .python
        .clone()
        .or(default_python.map(str::to_string))
        .unwrap_or_else(|| "3.11".into());
    let mut spec = EnvSpec::new(python);
    for (name, version) in base
        .iter()
        .chain(&declaration.pip)
        .chain(extra.iter().map(|(n, v)| (n, v)))
    {
        spec = spec.with_package(name.as_str(), version.as_str());
    }
    if !spec.packages.contains_key("pyarrow") {
        spec = spec.with_package("pyarrow", PYARROW);
    }
    spec
}

/// Input batches as functions expect them: without field ids and other Parquet metadata,
/// and with strings as `utf8` (the scan reads them as views, which pyarrow's compute
/// functions do not all take yet).
pub(crate) fn strip_views_and_metadata(
    schema: arrow::datatypes::SchemaRef,
    batches: basin_sql::RecordBatchStream,
) -> (arrow::datatypes::SchemaRef, basin_sql::RecordBatchStream) {
    use arrow::datatypes::DataType;
    let plain = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let data_type = match f.data_type() {
                    DataType::Utf8View => DataType::Utf8,
                    DataType::BinaryView => DataType::Binary,
                    other => other.clone(),
                };
                f.as_ref()
                    .clone()
                    .with_data_type(data_type)
                    .with_metadata(Default::default())
            })
            .collect::<Vec<_>>(),
    ));
    let stream_schema = plain.clone();
    let batches = batches
        .map(move |batch| {
            batch.and_then(|b| {
                let columns = b
                    .columns()
                    .iter()
                    .zip(stream_schema.fields())
                    .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::internal(format!("input: {e}")))?;
                RecordBatch::try_new(stream_schema.clone(), columns)
                    .map_err(|e| Error::internal(format!("input schema: {e}")))
            })
        })
        .boxed();
    (plain, batches)
}

/// `SELECT columns FROM table WHERE filter`: DataFusion pushes both into the Parquet scan.
/// Bare names are tables of `namespace` (a project's); without one, they are an error.
pub(crate) fn input_query(
    input: &ModelInput,
    declaration: &Declaration,
    namespace: Option<&str>,
) -> Result<String> {
    if !input.name.contains('.') && namespace.is_none() {
        return Err(Error::invalid(format!(
            "{}: input `{}` names a model; `basin invoke` reads tables only",
            declaration.function, input.name
        ))
        .with_hint("name the table as namespace.table, or run the project with `basin run`"));
    }
    Ok(select_sql(input))
}

/// The scan of one input, as SQL.
pub(crate) fn select_sql(input: &ModelInput) -> String {
    let columns = match &input.columns {
        Some(columns) if !columns.is_empty() => columns
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "*".to_string(),
    };
    let mut sql = format!("SELECT {columns} FROM {}", input.name);
    if let Some(filter) = input.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        sql.push_str(&format!(" WHERE {filter}"));
    }
    sql
}

/// The secrets a function declared, plus `shared` ones (a project's), with their values from
/// `[secrets]` in basin.toml (`declared`): a name not declared there is refused.
pub(crate) fn secrets_for(
    declaration: &Declaration,
    shared: &[String],
    declared: &BTreeMap<String, crate::config::Secret>,
) -> Result<BTreeMap<String, String>> {
    let function = &declaration.function;
    declaration
        .secrets
        .iter()
        .chain(shared)
        .map(|name| {
            let secret = declared.get(name).ok_or_else(|| {
                Error::invalid(format!(
                    "function `{function}` needs the secret `{name}`, which basin.toml does not \
                     declare under [secrets]"
                ))
                .with_hint(format!(
                    "declare where its value comes from: [secrets] {name} = {{ env = \"{name}\" }} \
                     (a variable of the shell that runs basin), or {{ file = \"...\" }}"
                ))
            })?;
            Ok((name.clone(), secret.read(function, name)?))
        })
        .collect()
}

/// How users name a target: `clean.py:orders`, or a program's file name.
fn display_name(target: &str) -> String {
    match target.rsplit_once(':') {
        Some((file, name)) if file.ends_with(".py") => {
            let file = Path::new(file)
                .file_name()
                .map_or(file.into(), |f| f.to_string_lossy());
            format!("{file}:{name}")
        }
        _ => Path::new(target)
            .file_name()
            .map_or(target.to_string(), |f| f.to_string_lossy().into_owned()),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
