//! What a function declares (`@basin.python(...)`, `basin.Model(...)` defaults), read by the
//! SDK's own parser (`python -m basin.spec`) without importing the user's file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use basin_catalog::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

/// One input: a table (or, in a project, a model) with the columns and filter to push down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInput {
    pub name: String,
    pub columns: Option<Vec<String>>,
    pub filter: Option<String>,
}

/// A function's declaration, as `basin.spec` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Declaration {
    pub function: String,
    pub file: PathBuf,
    pub line: u32,
    #[serde(default)]
    pub params: Vec<String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, ModelInput>,
    pub python: Option<String>,
    #[serde(default)]
    pub pip: BTreeMap<String, String>,
    pub timeout_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub internet: bool,
    #[serde(default)]
    pub secrets: Vec<String>,
    pub concurrency: Option<usize>,
    pub model: Option<serde_json::Value>,
    #[serde(default)]
    pub expectation: bool,
    /// What invokes the function once deployed (`@basin.on_object`, `schedule`, `http`).
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// The table its results are appended to, exactly once per event.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default = "one")]
    pub batch_size: usize,
    #[serde(default)]
    pub batch_window_seconds: f64,
    #[serde(default = "three")]
    pub max_attempts: u32,
}

fn one() -> usize {
    1
}

fn three() -> u32 {
    3
}

/// A deployed function's trigger, as the SDK's decorators declare it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Trigger {
    /// Objects created in a bucket, filtered by key prefix and suffix.
    Object {
        bucket: String,
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        suffix: String,
    },
    /// Slots of a five-field cron expression in a time zone.
    Schedule {
        cron: String,
        tz: String,
        /// `skip` or `run_once`: what to do about slots missed while down.
        missed: String,
    },
    /// `POST /fn/NAME` (or `path`).
    Http { path: Option<String> },
}

impl Trigger {
    pub fn describe(&self) -> String {
        match self {
            Trigger::Object {
                bucket,
                prefix,
                suffix,
            } => format!("object {bucket}/{prefix}*{suffix}"),
            Trigger::Schedule { cron, tz, .. } => format!("schedule \"{cron}\" {tz}"),
            Trigger::Http { path } => format!("http {}", path.as_deref().unwrap_or("/fn/NAME")),
        }
    }
}

/// Reads the declarations of `file` (only `function`'s when given) with the first `python3`
/// on PATH and the SDK folder `sdk` (see `sdk::materialize`).
pub async fn read_declarations(
    sdk: &Path,
    file: &Path,
    function: Option<&str>,
) -> Result<Vec<Declaration>> {
    let mut command = Command::new("python3");
    command
        .args(["-I", "-c"])
        .arg("import sys; sys.path.insert(0, sys.argv.pop(1)); from basin.spec import main; sys.exit(main(sys.argv[1:]))")
        .arg(sdk)
        .arg(file);
    if let Some(name) = function {
        command.args(["--function", name]);
    }
    let output = command.output().await.map_err(|e| {
        Error::io(format!(
            "cannot run python3 to read {}: {e}",
            file.display()
        ))
        .with_hint("Basin reads function declarations with the python3 on PATH; install Python 3")
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // `error: MESSAGE` (perhaps several lines: a caret under a syntax error), then
        // `hint: HINT` when basin.spec has one (the literals hint is only for decorators).
        let stderr = stderr.trim();
        let (message, hint) = match stderr.rsplit_once("\nhint: ") {
            Some((message, hint)) => (message, Some(hint)),
            None => (stderr, None),
        };
        let error = Error::invalid(message.trim_start_matches("error: ").to_string());
        return Err(match hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        });
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| Error::internal(format!("basin.spec printed something unexpected: {e}")))
}
