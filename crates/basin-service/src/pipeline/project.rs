//! A project folder: `basin.toml` ([project], [parameters]) beside `*.py` files with models
//! and expectations and `*.sql` files whose stem names the model they produce.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use basin_core::{Error, Result};
use basin_ingest::Mode;
use basin_runtime::{Declaration, ModelInput};
use datafusion::sql::TableReference;
use datafusion::sql::parser::DFParser;
use datafusion::sql::resolve::resolve_table_references;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct ProjectFile {
    project: ProjectSection,
    #[serde(default)]
    parameters: BTreeMap<String, ParameterDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectSection {
    name: String,
    namespace: String,
    #[serde(default = "default_python")]
    python: String,
    #[serde(default)]
    pip: BTreeMap<String, String>,
    #[serde(default)]
    secrets: Vec<String>,
}

fn default_python() -> String {
    "3.11".into()
}

/// A declared parameter: its type and default; `--param name=value` overrides it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterDef {
    #[serde(rename = "type")]
    pub kind: ParamType,
    pub default: toml::Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Int,
    Float,
    Str,
    Bool,
}

/// How a model is computed.
#[derive(Clone, Debug)]
pub enum ModelKind {
    Python {
        declaration: Box<Declaration>,
        source: String,
    },
    Sql {
        sql: String,
    },
}

/// One model: a node of the DAG.
#[derive(Clone, Debug)]
pub struct ModelDef {
    pub name: String,
    pub file: PathBuf,
    pub kind: ModelKind,
    /// `None`: the output lives only for the run.
    pub materialize: Option<Mode>,
    pub partition_by: Vec<String>,
    /// Reads only its table inputs' changes since its last run, and appends or merges by key
    /// (`super::incremental`).
    pub incremental: Option<super::incremental::Incremental>,
    /// Parameter name (for SQL: the table name as written) -> what it reads.
    pub inputs: Vec<(String, ModelInput)>,
}

/// A check over model outputs.
#[derive(Clone, Debug)]
pub struct ExpectationDef {
    pub name: String,
    pub declaration: Declaration,
    pub source: String,
}

#[derive(Clone, Debug)]
pub struct Project {
    pub dir: PathBuf,
    pub name: String,
    pub namespace: String,
    pub python: String,
    pub pip: BTreeMap<String, String>,
    pub secrets: Vec<String>,
    pub parameters: BTreeMap<String, ParameterDef>,
    pub models: Vec<ModelDef>,
    pub expectations: Vec<ExpectationDef>,
    /// Every source file, by path relative to `dir`: stored with each run.
    pub files: BTreeMap<String, String>,
}

impl Project {
    /// Reads the project in `dir`; `params` are the resolved parameter values (substituted
    /// into SQL models as literals).
    pub async fn load(
        dir: &Path,
        sdk: &Path,
        params: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Self> {
        let dir = std::path::absolute(dir).map_err(|e| Error::io_with(dir.display(), e))?;
        let config_path = dir.join("basin.toml");
        let text = std::fs::read_to_string(&config_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found(format!("{} has no basin.toml", dir.display())).with_hint(
                    "create a project with `basin init --project`, or run in a project folder",
                )
            } else {
                // Not UTF-8 text, or not readable: not a missing file.
                Error::io_with(format!("cannot read {}", config_path.display()), e)
            }
        })?;
        let file: ProjectFile = toml::from_str(&text).map_err(|e| {
            crate::config::toml_error(
                &config_path,
                &text,
                &e,
                "a project needs [project] with name and namespace; see docs/pipelines.md",
            )
        })?;
        basin_catalog::Key::parse(&file.project.namespace).map_err(|e| {
            let mut located = Error::invalid(format!(
                "{}: [project] namespace: {}",
                config_path.display(),
                e.message
            ));
            located.hint = e.hint;
            located
        })?;
        let mut project = Project {
            dir: dir.clone(),
            name: file.project.name,
            namespace: file.project.namespace,
            python: file.project.python,
            pip: file.project.pip,
            secrets: file.project.secrets,
            parameters: file.parameters,
            models: Vec::new(),
            expectations: Vec::new(),
            files: BTreeMap::new(),
        };
        project.files.insert("basin.toml".into(), text.clone());
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io_with(format!("cannot list {}", dir.display()), e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("py" | "sql")))
            .collect();
        paths.sort();
        for path in paths {
            let source = std::fs::read_to_string(&path)
                .map_err(|e| Error::io_with(format!("cannot read {}", path.display()), e))?;
            let relative = path
                .strip_prefix(&dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            project.files.insert(relative.clone(), source.clone());
            if path.extension().is_some_and(|e| e == "sql") {
                project
                    .models
                    .push(sql_model(&path, &relative, &source, params)?);
                continue;
            }
            for declaration in basin_runtime::read_declarations(sdk, &path, None).await? {
                if declaration.expectation {
                    project.expectations.push(ExpectationDef {
                        name: declaration.function.clone(),
                        declaration,
                        source: source.clone(),
                    });
                } else if let Some(model) = declaration.model.clone() {
                    project
                        .models
                        .push(python_model(&path, declaration, model, &source)?);
                }
            }
        }
        if project.models.is_empty() {
            return Err(
                Error::invalid(format!("{} declares no models", dir.display())).with_hint(
                    "add a *.sql file, or a Python function decorated with @basin.model()",
                ),
            );
        }
        Ok(project)
    }

    pub fn model(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }
}

fn python_model(
    path: &Path,
    declaration: Declaration,
    model: serde_json::Value,
    source: &str,
) -> Result<ModelDef> {
    let name = model["name"]
        .as_str()
        .unwrap_or(&declaration.function)
        .to_string();
    let materialize = match model["materialize"].as_str() {
        Some("replace") => Some(Mode::Replace),
        Some("append") => Some(Mode::Append),
        _ => None,
    };
    let partition_by = model["partition_by"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let inputs = declaration
        .inputs
        .iter()
        .map(|(p, i)| (p.clone(), i.clone()))
        .collect();
    let incremental =
        (model["incremental"].as_bool() == Some(true)).then(|| super::incremental::Incremental {
            key: model["key"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        });
    Ok(ModelDef {
        name,
        file: path.to_path_buf(),
        kind: ModelKind::Python {
            declaration: Box::new(declaration),
            source: source.to_string(),
        },
        materialize,
        partition_by,
        incremental,
        inputs,
    })
}

/// A SQL model: one query; its inputs are the tables it reads (parsed, CTEs excluded).
fn sql_model(
    path: &Path,
    relative: &str,
    source: &str,
    params: &BTreeMap<String, serde_json::Value>,
) -> Result<ModelDef> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .ok_or_else(|| {
            Error::invalid(format!(
                "{relative}: a SQL model's file name must be its name (letters, digits, _)"
            ))
        })?
        .to_string();
    let sql = substitute(source, params, relative)?;
    let mut statements = DFParser::parse_sql(&sql).map_err(|e| {
        Error::invalid(format!("{relative}: {e}")).with_hint("a SQL model is one SELECT query")
    })?;
    if statements.len() != 1 {
        return Err(Error::invalid(format!(
            "{relative}: holds {} statements; a SQL model is one query",
            statements.len()
        )));
    }
    let statement = statements.pop_front().expect("one statement");
    let (tables, _ctes) = resolve_table_references(&statement, true)
        .map_err(|e| Error::invalid(format!("{relative}: {e}")))?;
    let inputs = tables
        .iter()
        .map(|t| {
            let written = t.to_string();
            let name = match t {
                TableReference::Bare { table } => table.to_string(),
                TableReference::Partial { schema, table } => format!("{schema}.{table}"),
                TableReference::Full { schema, table, .. } => format!("{schema}.{table}"),
            };
            (
                written,
                ModelInput {
                    name,
                    columns: None,
                    filter: None,
                },
            )
        })
        .collect();
    Ok(ModelDef {
        name,
        file: path.to_path_buf(),
        kind: ModelKind::Sql {
            sql: sql.trim().trim_end_matches(';').to_string(),
        },
        materialize: Some(Mode::Replace),
        partition_by: Vec::new(),
        incremental: sql_header(source, relative)?,
        inputs,
    })
}

/// What a SQL model's first comment lines declare: `-- basin: incremental [key=a,b]`.
fn sql_header(source: &str, file: &str) -> Result<Option<super::incremental::Incremental>> {
    let mut incremental = None;
    for line in source.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            break;
        };
        let Some(declared) = comment.trim().strip_prefix("basin:") else {
            continue;
        };
        for word in declared.split_whitespace() {
            match word.split_once('=') {
                None if word == "incremental" => {
                    incremental.get_or_insert_with(super::incremental::Incremental::default);
                }
                Some(("key", columns)) => {
                    incremental
                        .get_or_insert_with(super::incremental::Incremental::default)
                        .key = columns.split(',').map(|c| c.trim().to_string()).collect();
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{file}: `-- basin: {}`: `{word}` is not something a SQL model declares",
                        declared.trim()
                    ))
                    .with_hint("write `-- basin: incremental` or `-- basin: incremental key=id`"));
                }
            }
        }
    }
    Ok(incremental)
}

/// Replaces `{{ name }}` with the parameter's value as a SQL literal.
fn substitute(
    source: &str,
    params: &BTreeMap<String, serde_json::Value>,
    file: &str,
) -> Result<String> {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| Error::invalid(format!("{file}: `{{{{` without `}}}}`")))?;
        let name = rest[start + 2..start + end].trim();
        let value = params.get(name).ok_or_else(|| {
            Error::invalid(format!("{file}: parameter `{name}` is not declared"))
                .with_hint("declare it under [parameters] in basin.toml")
        })?;
        out.push_str(&match value {
            serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
            serde_json::Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
            other => other.to_string(),
        });
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The parameters' values: defaults, then `overrides` (`name=value`, typed as declared).
pub fn resolve_parameters(
    dir: &Path,
    overrides: &[(String, String)],
) -> Result<BTreeMap<String, serde_json::Value>> {
    let path = dir.join("basin.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let defs: BTreeMap<String, ParameterDef> = toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| t.get("parameters").cloned())
        .map(|p| p.try_into())
        .transpose()
        .map_err(|e: toml::de::Error| {
            Error::invalid(format!("{}: [parameters]: {}", path.display(), e.message()))
        })?
        .unwrap_or_default();
    let mut values = BTreeMap::new();
    for (name, def) in &defs {
        let text = match &def.default {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let value = typed(name, def.kind, &text).map_err(|e| {
            Error::invalid(format!("{}: [parameters] {}", path.display(), e.message))
                .with_hint("fix the default in basin.toml, or override it with --param NAME=VALUE")
        })?;
        values.insert(name.clone(), value);
    }
    for (name, text) in overrides {
        let def = defs.get(name).ok_or_else(|| {
            let known: Vec<&str> = defs.keys().map(String::as_str).collect();
            Error::invalid(format!("--param {name}: no such parameter")).with_hint(
                match basin_core::suggest(name, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("declared parameters: {}", known.join(", ")),
                },
            )
        })?;
        values.insert(name.clone(), typed(name, def.kind, text)?);
    }
    Ok(values)
}

fn typed(name: &str, kind: ParamType, text: &str) -> Result<serde_json::Value> {
    let bad = || {
        Error::invalid(format!("parameter `{name}`: `{text}` is not a {kind:?}").to_lowercase())
            .with_hint(format!("give --param {name}=VALUE with a {kind:?} value").to_lowercase())
    };
    Ok(match kind {
        ParamType::Int => serde_json::json!(text.parse::<i64>().map_err(|_| bad())?),
        ParamType::Float => serde_json::json!(text.parse::<f64>().map_err(|_| bad())?),
        ParamType::Bool => serde_json::json!(text.parse::<bool>().map_err(|_| bad())?),
        ParamType::Str => serde_json::json!(text),
    })
}
