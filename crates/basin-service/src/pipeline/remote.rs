//! A run started over the HTTP API (`basin --remote URL run DIR`): the project's files arrive
//! in the request and run as the token that sent them, with its grants. What a principal with
//! grants of its own may not run: a project reading secrets (the server's environment), or
//! needing packages on a server that builds them from source (their build code runs outside
//! any sandbox).

use std::collections::BTreeMap;
use std::sync::Arc;

use basin_core::{Error, ErrorKind, Result};

use super::project::{ModelKind, Project};
use super::{Pipelines, RunRecord, RunRequest};

/// What a remote run may say besides its files (`basin run`'s flags).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct RemoteRun {
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub no_cache: bool,
    #[serde(default)]
    pub full_refresh: bool,
    #[serde(default)]
    pub keep_branch: bool,
}

impl Pipelines<'_> {
    /// Runs the project `run.files` holds as the acting principal, into `run.branch`
    /// (default `main`), as `basin run` runs a folder; answers the run's record.
    pub async fn run_files(&self, run: RemoteRun) -> Result<RunRecord> {
        let laid = crate::uploads::lay_out(
            self.lake,
            "runs",
            &run.files,
            crate::uploads::is_project_file,
        )
        .await?;
        let request = RunRequest {
            dir: laid.dir.clone(),
            branch: Some(
                run.branch
                    .unwrap_or_else(|| basin_catalog::MAIN.to_string()),
            ),
            params: run.params.into_iter().collect(),
            dry_run: run.dry_run,
            no_cache: run.no_cache,
            full_refresh: run.full_refresh,
            keep_branch: run.keep_branch,
        };
        // Nobody watches a remote run's lines as they come: its record keeps each model's.
        self.run(request, Arc::new(|_, _, _| {}), Arc::new(|_| {}))
            .await
            .map_err(|e| laid.as_sent(e))
    }
}

/// Refuses a project a principal with grants of its own (not an admin) may not run.
pub(super) fn check_restricted(project: &Project, build_from_source: bool) -> Result<()> {
    let Some(actor) = basin_catalog::actor::current() else {
        return Ok(());
    };
    if actor.grants.as_ref().is_none_or(|g| g.is_admin()) {
        return Ok(());
    }
    let principal = actor.principal.unwrap_or_default();
    let declarations = project
        .models
        .iter()
        .filter_map(|m| match &m.kind {
            ModelKind::Python { declaration, .. } => Some(declaration.as_ref()),
            ModelKind::Sql { .. } => None,
        })
        .chain(project.expectations.iter().map(|e| &e.declaration));
    let mut secrets = project.secrets.clone();
    let mut packages = !project.pip.is_empty();
    for declaration in declarations {
        secrets.extend(declaration.secrets.iter().cloned());
        packages |= !declaration.pip.is_empty();
    }
    let refuse = |why: String| {
        Err(Error::new(ErrorKind::Forbidden, why)
            .with_hint("ask an admin to run it, or run it where the lakehouse lives"))
    };
    if !secrets.is_empty() {
        return refuse(format!(
            "project `{}` reads secrets ({}), which are this server's environment; `{principal}` may not run it",
            project.name,
            secrets.join(", ")
        ));
    }
    if build_from_source && packages {
        return refuse(format!(
            "project `{}` needs packages, and this server builds them from source (build_from_source), running their build code outside any sandbox; `{principal}` may not run it",
            project.name
        ));
    }
    Ok(())
}
