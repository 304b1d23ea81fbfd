//! Folders sent to a server: `basin --remote URL deploy DIR` and `basin --remote URL run
//! DIR` read the files the server reads and send them in the request; locally, the same
//! commands read the folder in place.

use std::collections::BTreeMap;
use std::path::Path;

use basin_core::{Error, Result};
use basin_service::pipeline::{RunRecord, RunRequest};
use basin_service::triggers::deploy::DeployPlan;
use basin_service::uploads::{is_deployable, is_project_file};
use serde_json::json;

use super::Lake;

impl Lake {
    /// Deploys the triggered functions of `dir` (`basin deploy`); over `--remote`, its `.py`
    /// files and basin.toml go to the server, which deploys them as the token.
    pub async fn deploy(&self, dir: &Path, apply: bool) -> Result<DeployPlan> {
        match self {
            Lake::Local(lakehouse) => lakehouse.triggers().deploy(dir, apply).await,
            Lake::Remote(remote) => {
                let body = json!({"files": folder_files(dir, is_deployable)?, "plan": !apply});
                remote.post(&["deploy"], &body).await
            }
        }
    }

    /// Runs the project in `request.dir` on the server (`basin --remote URL run DIR`): its
    /// files go in the request, and the run acts as the token. Remote only.
    pub async fn run_remote(&self, request: &RunRequest) -> Result<RunRecord> {
        let remote = match self {
            Lake::Remote(remote) => remote,
            Lake::Local(_) => return Err(Error::internal("run_remote on a local lakehouse")),
        };
        let params: BTreeMap<&str, &str> = request
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = json!({
            "files": folder_files(&request.dir, is_project_file)?,
            "branch": request.branch,
            "params": params,
            "dry_run": request.dry_run,
            "no_cache": request.no_cache,
            "full_refresh": request.full_refresh,
            "keep_branch": request.keep_branch,
        });
        remote.post(&["runs"], &body).await
    }
}

/// The files of `dir` that `wanted` keeps, by name.
fn folder_files(dir: &Path, wanted: fn(&str) -> bool) -> Result<BTreeMap<String, String>> {
    let unreadable = |e: std::io::Error| {
        Error::io_with(format!("cannot read {}", dir.display()), e)
            .with_hint("give the folder holding the .py files (and a project's .sql files)")
    };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if path.is_file() && wanted(&name) {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io_with(format!("cannot read {}", path.display()), e))?;
            files.insert(name, text);
        }
    }
    Ok(files)
}
