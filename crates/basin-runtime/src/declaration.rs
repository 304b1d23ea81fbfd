//! What a function declares (`@basin.python(...)`, `basin.Model(...)` defaults), read by the
//! SDK's own parser (`python -m basin.spec`) without importing the user's file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use basin_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
    /// False: a fresh process for every invocation (`@basin.python(reuse=False)`); unset,
    /// `[functions] reuse` decides.
    #[serde(default)]
    pub reuse: Option<bool>,
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
    /// The modules its file imports (`basin.spec`): its worker imports those of the
    /// environment's packages ahead (see [`Declaration::preload`]).
    #[serde(default)]
    pub imports: Vec<String>,
}

impl Declaration {
    /// What the worker of `spec` imports before it forks this function's process: the
    /// environment's packages (distribution names), then the modules the file imports. The
    /// worker imports a module only when its top-level package is already loaded (a
    /// submodule such as `pyarrow.compute`), never the user's own modules.
    pub fn preload(&self, spec: &crate::EnvSpec) -> Vec<String> {
        let mut names: Vec<String> = spec.packages.keys().cloned().collect();
        for module in &self.imports {
            if !names.contains(module) {
                names.push(module.clone());
            }
        }
        names
    }
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
    /// Commits that change a table on a branch (`@basin.on_commit`).
    Commit { table: String, branch: String },
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
            Trigger::Commit { table, branch } => format!("commit {table}@{branch}"),
            Trigger::Schedule { cron, tz, .. } => format!("schedule \"{cron}\" {tz}"),
            Trigger::Http { path } => format!("http {}", path.as_deref().unwrap_or("/fn/NAME")),
        }
    }
}

/// Reads the declarations of `file` (only `function`'s when given) with the first `python3`
/// on PATH and the SDK folder `sdk` (see `sdk::materialize`).
///
/// What `basin.spec` prints depends only on the SDK, the file's path and text, and the
/// `basin.toml` beside it, so it is kept in `sdk/declarations/` and read from there while
/// those are unchanged: a re-run of an unchanged project starts no Python (a `python3` behind
/// a version manager's shim takes 100 ms or more to start).
pub async fn read_declarations(
    sdk: &Path,
    file: &Path,
    function: Option<&str>,
) -> Result<Vec<Declaration>> {
    let cache = DeclarationCache::new(sdk, file, function);
    let before = cache.fingerprint();
    if let Some(found) = before.as_deref().and_then(|f| cache.get(f)) {
        return Ok(found);
    }
    let found = run_spec(sdk, file, function).await?;
    // Kept only if nothing changed while Python read the files.
    if let Some(fingerprint) = before
        && cache.fingerprint().as_deref() == Some(fingerprint.as_str())
    {
        cache.put(&fingerprint, &found);
    }
    Ok(found)
}

/// One file's (and function's) entry in the SDK folder's cache of declarations.
struct DeclarationCache<'a> {
    entry: PathBuf,
    file: &'a Path,
}

#[derive(Serialize, Deserialize)]
struct CachedDeclarations {
    fingerprint: String,
    declarations: Vec<Declaration>,
}

impl<'a> DeclarationCache<'a> {
    fn new(sdk: &Path, file: &'a Path, function: Option<&str>) -> Self {
        let name = hex(&Sha256::new()
            .chain_update(file.as_os_str().as_encoded_bytes())
            .chain_update([0])
            .chain_update(function.unwrap_or_default())
            .finalize()[..16]);
        Self {
            entry: sdk.join("declarations").join(format!("{name}.json")),
            file,
        }
    }

    /// A digest of the file's text and of the `basin.toml` beside it (or its absence); None
    /// when the file cannot be read (Python then says why).
    fn fingerprint(&self) -> Option<String> {
        let mut hasher = Sha256::new();
        hasher.update(std::fs::read(self.file).ok()?);
        match self
            .file
            .parent()
            .map(|d| std::fs::read(d.join("basin.toml")))
        {
            Some(Ok(toml)) => {
                hasher.update([1]);
                hasher.update(toml);
            }
            _ => hasher.update([0]),
        }
        Some(hex(&hasher.finalize()))
    }

    fn get(&self, fingerprint: &str) -> Option<Vec<Declaration>> {
        let cached: CachedDeclarations =
            serde_json::from_slice(&std::fs::read(&self.entry).ok()?).ok()?;
        (cached.fingerprint == fingerprint).then_some(cached.declarations)
    }

    /// Written whole (a temporary file renamed over the entry); a failure only costs the
    /// next read a Python run.
    fn put(&self, fingerprint: &str, declarations: &[Declaration]) {
        let cached = CachedDeclarations {
            fingerprint: fingerprint.to_string(),
            declarations: declarations.to_vec(),
        };
        let Some(folder) = self.entry.parent() else {
            return;
        };
        let temp = folder.join(format!(".{}.tmp", basin_core::ids::random()));
        let written = std::fs::create_dir_all(folder)
            .and_then(|()| std::fs::write(&temp, serde_json::to_vec(&cached)?))
            .and_then(|()| std::fs::rename(&temp, &self.entry));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        if let Err(e) = written {
            tracing::debug!(
                "cannot keep the declarations of {}: {e}",
                self.file.display()
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `python3 -m basin.spec FILE [--function NAME]`, its JSON read, its error made Basin's.
async fn run_spec(sdk: &Path, file: &Path, function: Option<&str>) -> Result<Vec<Declaration>> {
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
        let (message, hint) = basin_core::split_hint(stderr);
        let error = Error::invalid(message.trim_start_matches("error: ").to_string());
        return Err(match hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        });
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| Error::internal(format!("basin.spec printed something unexpected: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn declarations_are_kept_until_the_file_or_its_basin_toml_changes() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = crate::sdk::materialize(&dir.path().join("tools")).unwrap();
        let file = dir.path().join("load.py");
        let write = |python: &str| {
            std::fs::write(
                &file,
                format!(
                    "import basin\n\n@basin.python(\"{python}\")\ndef load(event):\n    return 1\n"
                ),
            )
            .unwrap()
        };
        let read = || async { read_declarations(&sdk, &file, None).await.unwrap() };
        write("3.11");
        assert_eq!(read().await[0].python.as_deref(), Some("3.11"));

        // The second read comes from the cache: an entry changed by hand is what it returns.
        let entry = DeclarationCache::new(&sdk, &file, None).entry;
        let text = std::fs::read_to_string(&entry).unwrap();
        assert!(text.contains("\"3.11\""), "{text}");
        std::fs::write(&entry, text.replace("\"3.11\"", "\"3.99\"")).unwrap();
        assert_eq!(read().await[0].python.as_deref(), Some("3.99"));
        // Another function's entry is separate.
        let one = read_declarations(&sdk, &file, Some("load")).await.unwrap();
        assert_eq!(one[0].python.as_deref(), Some("3.11"));

        // An edit is read again by Python.
        write("3.12");
        assert_eq!(read().await[0].python.as_deref(), Some("3.12"));
        assert!(read().await[0].trigger.is_none());
        // So is a basin.toml written beside it, which can declare triggers.
        std::fs::write(
            dir.path().join("basin.toml"),
            "[triggers.load.http]\npath = \"/load\"\n",
        )
        .unwrap();
        assert_eq!(
            read().await[0].trigger,
            Some(Trigger::Http {
                path: Some("/load".into())
            })
        );
    }

    #[tokio::test]
    async fn a_declaration_lists_the_modules_its_file_imports_for_the_worker_to_preload() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = crate::sdk::materialize(&dir.path().join("tools")).unwrap();
        let file = dir.path().join("clean.py");
        std::fs::write(
            &file,
            [
                "import basin",
                "import pyarrow as pa, pyarrow.compute as pc",
                "from pandas import api",
                "from . import helpers",
                "",
                "@basin.python(\"3.11\")",
                "def clean(event):",
                "    import json",
                "    return 1",
            ]
            .join("\n"),
        )
        .unwrap();
        let found = read_declarations(&sdk, &file, None).await.unwrap();
        // Inside the function too; `from a import b` names both (b may be a module); not the
        // relative import.
        assert_eq!(
            found[0].imports,
            [
                "basin",
                "json",
                "pandas",
                "pandas.api",
                "pyarrow",
                "pyarrow.compute"
            ]
        );
        let spec = crate::EnvSpec::new("3.11").with_package("pyarrow", "26.0.1");
        assert_eq!(
            found[0].preload(&spec),
            [
                "pyarrow",
                "basin",
                "json",
                "pandas",
                "pandas.api",
                "pyarrow.compute"
            ]
        );
    }
}
