//! `basin deploy`: the triggered functions of a folder, compared with what is deployed (plan)
//! and then deployed (apply). A deployed version is immutable: its code and environment hash
//! make its version, and changing either deploys a new one.

use crate::deployed::{DeployedFunction, Deployer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use basin_catalog::{EventCounts, Grants};
use basin_core::{Error, ErrorKind, Result};
use basin_runtime::Trigger;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Triggers;
use crate::functions::env_spec;

/// A deployed function as `basin functions ls` and the console list it: its trigger in
/// words and how many of its events are in each state.
#[derive(Clone, Debug, Serialize)]
pub struct FunctionStatus {
    #[serde(flatten)]
    pub function: DeployedFunction,
    /// e.g. `object landing/orders/*.csv`, `http /fn/score`.
    pub trigger: String,
    pub events: EventCounts,
}

/// What a deploy adds, changes and removes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeployPlan {
    pub changes: Vec<PlannedChange>,
    /// Whether it was applied (not with `--plan`).
    pub applied: bool,
    /// What looks like a mistake but is not one for sure: a trigger on a new bucket whose
    /// name is close to an existing one's.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedChange {
    pub function: String,
    /// `add`, `change`, `remove` or `same`.
    pub action: String,
    pub trigger: String,
    pub to: Option<String>,
    pub version: String,
    /// For a change: what differs (code, environment, trigger, target).
    pub detail: String,
}

impl Triggers<'_> {
    /// Reads the triggered functions of the `.py` files in `dir` and compares them with the
    /// deployed ones; with `apply`, deploys them (building their environments, creating
    /// their buckets) and removes the functions this deployer deployed that the folder no
    /// longer has (others' stay: `basin functions rm` removes any).
    ///
    /// Who deploys them (the acting principal, [`basin_catalog::actor`]) is recorded, and
    /// what they write acts with that principal's grants. A principal with grants of its own
    /// (a token over `--remote`; not an admin) deploys only its own functions: it cannot
    /// change another's, point one at a table it may not write, watch a bucket, or deploy
    /// one that reads secrets (the server's environment). No deployer may declare an HTTP
    /// path another function holds.
    pub async fn deploy(&self, dir: &Path, apply: bool) -> Result<DeployPlan> {
        let deployer = Deployer {
            principal: self.lake.catalog().principal(),
            grants: basin_catalog::actor::current()
                .and_then(|a| a.grants)
                .map(|g| (*g).clone()),
        };
        let found = self.read_functions(dir, &deployer).await?;
        let deployed: BTreeMap<String, DeployedFunction> = self
            .lake
            .deployed()
            .list()
            .await?
            .into_iter()
            .map(|f| (f.name.clone(), f))
            .collect();
        if let Some(grants) = deployer.grants.as_ref().filter(|g| !g.is_admin()) {
            self.check_own(&deployer.principal, grants, &found, &deployed)?;
        }
        // This deployer's functions the folder no longer has (the local user's include those
        // deployed before Basin recorded deployers).
        let local = deployer.grants.is_none();
        let removed: Vec<&DeployedFunction> = deployed
            .values()
            .filter(|f| !found.contains_key(&f.name))
            .filter(|f| match &f.deployed_by {
                Some(by) => by.principal == deployer.principal,
                None => local,
            })
            .collect();
        let after = after_deploy(&found, &deployed, &removed);
        check_paths(&after)?;
        check_cycles(&after)?;
        let mut plan = DeployPlan::default();
        for f in found.values() {
            let (action, detail) = match deployed.get(&f.name) {
                None => ("add", String::new()),
                Some(old) if unchanged(old, f) => ("same", String::new()),
                Some(old) => ("change", differences(old, f)),
            };
            plan.changes.push(planned(f, action, detail));
        }
        // A trigger on a bucket that does not exist yet makes it; a name close to an
        // existing bucket's is most likely a typo, whose events would never come.
        let existing = self.lake.buckets().names();
        for f in found.values() {
            if let Some(Trigger::Object { bucket, .. }) = f.trigger()
                && !existing.contains(bucket)
                && let Some(meant) =
                    basin_core::suggest(bucket, existing.iter().map(String::as_str))
            {
                plan.warnings.push(format!(
                    "function `{}` watches a new bucket `{bucket}`: did you mean `{meant}`?",
                    f.name
                ));
            }
        }
        for old in &removed {
            plan.changes.push(planned(old, "remove", String::new()));
        }
        if !apply {
            return Ok(plan);
        }
        // Every environment and bucket first, then the records: a deploy stopped while it
        // builds (the slow part) has deployed nothing.
        let changed: Vec<&DeployedFunction> = found
            .values()
            .filter(|f| !deployed.get(&f.name).is_some_and(|old| unchanged(old, f)))
            .collect();
        for f in &changed {
            let spec = env_spec(&f.declaration, None, &BTreeMap::new(), &[]);
            self.lake.runtime()?.environment(&spec).await?;
            if let Some(Trigger::Object { bucket, .. }) = f.trigger()
                && self.lake.buckets().s3(bucket).is_none()
            {
                let folder = self.lake.buckets().folder(bucket);
                std::fs::create_dir_all(&folder).map_err(|e| {
                    Error::io(format!(
                        "cannot create bucket folder {}: {e}",
                        folder.display()
                    ))
                })?;
            }
        }
        let store = self.lake.catalog().store();
        for f in changed {
            store
                .save_function(&f.name, &serde_json::to_string(f)?)
                .await?;
        }
        for old in &removed {
            store.delete_function(&old.name).await?;
        }
        plan.applied = true;
        Ok(plan)
    }

    /// Refuses what a principal with grants of its own may not deploy (see [`Self::deploy`]).
    fn check_own(
        &self,
        principal: &str,
        grants: &Grants,
        found: &BTreeMap<String, DeployedFunction>,
        deployed: &BTreeMap<String, DeployedFunction>,
    ) -> Result<()> {
        let refuse = |message: String, hint: &str| {
            Err(Error::new(ErrorKind::Forbidden, message).with_hint(hint.to_string()))
        };
        if principal.is_empty() {
            return refuse(
                "a token without a name cannot own functions".to_string(),
                "deploy with a named token (basin token create --name NAME ...)",
            );
        }
        for f in found.values() {
            if let Some(old) = deployed.get(&f.name)
                && old.deployed_by.as_ref().map(|d| d.principal.as_str()) != Some(principal)
            {
                return refuse(
                    format!(
                        "function `{}` was deployed by `{}`; `{principal}` may not change it",
                        f.name,
                        old.deployer()
                    ),
                    "give yours another name, or ask an admin",
                );
            }
            if let Some(to) = &f.declaration.to
                && !grants.may_write(to, false, basin_catalog::MAIN)
            {
                return refuse(
                    format!(
                        "function `{}` appends to `{to}` on `main`, which `{principal}` may not write",
                        f.name
                    ),
                    &format!(
                        "a function writes with its deployer's grants: ask for write:{to}@main, or point it elsewhere"
                    ),
                );
            }
            if let Some(Trigger::Object { bucket, .. }) = f.trigger() {
                return refuse(
                    format!(
                        "function `{}` watches bucket `{bucket}`, whose objects it would read with Basin's own keys; buckets hold no grants, so only an admin may deploy it",
                        f.name
                    ),
                    "ask an admin to deploy it, or trigger it over HTTP or on a schedule",
                );
            }
            if !f.declaration.secrets.is_empty() {
                return refuse(
                    format!(
                        "function `{}` reads secrets ({}), which are this server's environment; only an admin may deploy it",
                        f.name,
                        f.declaration.secrets.join(", ")
                    ),
                    "ask an admin to deploy it, or leave out secrets=",
                );
            }
            if self.lake.settings().build_from_source && !f.declaration.pip.is_empty() {
                return refuse(
                    format!(
                        "function `{}` needs packages, and this server builds them from source (build_from_source), running their build code outside any sandbox; only an admin may deploy it",
                        f.name
                    ),
                    "ask an admin to deploy it, or to turn off build_from_source",
                );
            }
        }
        Ok(())
    }

    /// Deploys `files` (file name -> text) as the acting principal, as [`Self::deploy`]
    /// deploys a folder (`basin --remote URL deploy DIR`).
    pub async fn deploy_files(
        &self,
        files: &BTreeMap<String, String>,
        apply: bool,
    ) -> Result<DeployPlan> {
        let laid =
            crate::uploads::lay_out(self.lake, "deploys", files, crate::uploads::is_deployable)
                .await?;
        self.deploy(&laid.dir, apply)
            .await
            .map_err(|e| laid.as_sent(e))
    }

    /// Every deployed function with its trigger in words and its event counts.
    pub async fn function_statuses(&self) -> Result<Vec<FunctionStatus>> {
        let mut out = Vec::new();
        for function in self.lake.deployed().list().await? {
            out.push(FunctionStatus {
                trigger: function.describe_trigger(),
                events: self.lake.queue().event_counts(Some(&function.name)).await?,
                function,
            });
        }
        Ok(out)
    }

    async fn read_functions(
        &self,
        dir: &Path,
        deployer: &Deployer,
    ) -> Result<BTreeMap<String, DeployedFunction>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Error::not_found(format!("cannot read {}: {e}", dir.display()))
                .with_hint("give the folder holding your functions' .py files")
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "py"))
            .collect();
        files.sort();
        let sdk = basin_runtime::sdk_folder(&self.lake.tools_dir())?;
        let mut found: BTreeMap<String, DeployedFunction> = BTreeMap::new();
        for path in files {
            let path = std::path::absolute(&path).map_err(|e| Error::io_with(path.display(), e))?;
            let source = std::fs::read_to_string(&path)
                .map_err(|e| Error::io_with(format!("cannot read {}", path.display()), e))?;
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            for declaration in basin_runtime::read_declarations(&sdk, &path, None).await? {
                if declaration.trigger.is_none() {
                    continue;
                }
                let name = declaration.function.clone();
                if let Some(basin_runtime::Trigger::Schedule { cron, tz, missed }) =
                    &declaration.trigger
                {
                    crate::cron::Schedule::parse(cron, tz, missed).map_err(|e| {
                        let message = format!("{file}: `{name}`: {}", e.message);
                        let hint = e.hint.clone().unwrap_or_default();
                        Error::invalid(message).with_hint(hint)
                    })?;
                }
                if let Some(basin_runtime::Trigger::Http { path: Some(path) }) =
                    &declaration.trigger
                {
                    super::http::check_path(path)?;
                }
                if let Some(other) = found.get(&name) {
                    return Err(Error::invalid(format!(
                        "`{name}` is declared in both {} and {file}",
                        other.file
                    ))
                    .with_hint("deployed functions are named by their function name: rename one"));
                }
                let env_hash = env_spec(&declaration, None, &BTreeMap::new(), &[]).hash();
                let version = {
                    let mut h = Sha256::new();
                    h.update(source.as_bytes());
                    h.update(env_hash.as_bytes());
                    let digest = h.finalize();
                    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
                };
                found.insert(
                    name.clone(),
                    DeployedFunction {
                        name,
                        file: file.clone(),
                        source: source.clone(),
                        declaration,
                        env_hash,
                        version,
                        deployed_at_ms: chrono::Utc::now().timestamp_millis(),
                        deployed_by: Some(deployer.clone()),
                    },
                );
            }
        }
        // A [triggers.NAME] section for a function no file defines is a typo, not a no-op.
        for name in toml_triggers(dir)? {
            if !found.contains_key(&name) {
                return Err(Error::not_found(format!(
                    "{}: [triggers.{name}]: no function `{name}` in {}'s .py files",
                    dir.join("basin.toml").display(),
                    dir.display()
                ))
                .with_hint("name a top-level function of one of the folder's .py files"));
            }
        }
        Ok(found)
    }
}

/// The function names of `[triggers.NAME]` sections in `dir/basin.toml` (the SDK applies
/// them when it reads the files).
pub(crate) fn toml_triggers(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("basin.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io_with(format!("cannot read {}", path.display()), e)),
    };
    let value: toml::Table =
        toml::from_str(&text).map_err(|e| crate::config::toml_error(&path, &text, &e, ""))?;
    Ok(match value.get("triggers") {
        Some(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    })
}

fn planned(f: &DeployedFunction, action: &str, detail: String) -> PlannedChange {
    PlannedChange {
        function: f.name.clone(),
        action: action.to_string(),
        trigger: f.describe_trigger(),
        to: f.declaration.to.clone(),
        version: f.version.clone(),
        detail,
    }
}

/// The functions deployed once this deploy is done: those deployed that it keeps (whoever
/// deployed them), then its own.
fn after_deploy<'a>(
    found: &'a BTreeMap<String, DeployedFunction>,
    deployed: &'a BTreeMap<String, DeployedFunction>,
    removed: &[&DeployedFunction],
) -> Vec<&'a DeployedFunction> {
    deployed
        .values()
        .filter(|d| !found.contains_key(&d.name) && !removed.iter().any(|r| r.name == d.name))
        .chain(found.values())
        .collect()
}

/// Refuses two functions declaring one HTTP path: a deploy's own, or one of theirs and one
/// deployed that this deploy keeps (whoever deployed it). Otherwise one would take the
/// other's calls.
fn check_paths(after: &[&DeployedFunction]) -> Result<()> {
    let path = |f: &DeployedFunction| match f.trigger() {
        Some(Trigger::Http { path: Some(path) }) => Some(path.clone()),
        _ => None,
    };
    let mut held: BTreeMap<String, &str> = BTreeMap::new();
    for f in after {
        if let Some(p) = path(f)
            && let Some(other) = held.insert(p.clone(), f.name.as_str())
        {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "functions `{other}` and `{}` both declare the path {p}",
                    f.name
                ),
            )
            .with_hint("give one another path (or none: it is then called at /fn/NAME)"));
        }
    }
    Ok(())
}

/// Refuses commit triggers that would feed themselves: a function writing (`to=`) the table
/// it watches, or a chain of them coming back to where it started (each output's commit
/// would fire the chain again, forever).
fn check_cycles(after: &[&DeployedFunction]) -> Result<()> {
    // watched table -> (function, the table it writes)
    let mut edges: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for f in after {
        if let (Some(Trigger::Commit { table, .. }), Some(to)) = (f.trigger(), &f.declaration.to) {
            edges
                .entry(table.as_str())
                .or_default()
                .push((f.name.as_str(), to.as_str()));
        }
    }
    for start in edges.keys() {
        // Depth-first from `start`, with the functions on the way.
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, Vec::new())];
        let mut seen = std::collections::BTreeSet::new();
        while let Some((table, path)) = stack.pop() {
            for (function, to) in edges.get(table).into_iter().flatten() {
                let mut path = path.clone();
                path.push(function);
                if to == start {
                    return Err(Error::invalid(format!(
                        "the commit triggers of {} write `{start}`, which fires them again",
                        path.iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    ))
                    .with_hint("write the results to another table than the one watched"));
                }
                if seen.insert(*to) {
                    stack.push((to, path));
                }
            }
        }
    }
    Ok(())
}

/// Whether deploying `new` over `old` changes nothing: the same code, environment,
/// declaration and deployer (whose grants it acts with).
fn unchanged(old: &DeployedFunction, new: &DeployedFunction) -> bool {
    old.version == new.version
        && old.declaration == new.declaration
        && old.deployed_by == new.deployed_by
}

fn differences(old: &DeployedFunction, new: &DeployedFunction) -> String {
    let mut what = Vec::new();
    if old.source != new.source {
        what.push("code");
    }
    if old.env_hash != new.env_hash {
        what.push("environment");
    }
    if old.trigger() != new.trigger() {
        what.push("trigger");
    }
    if old.declaration.to != new.declaration.to {
        what.push("target table");
    }
    if old.deployed_by != new.deployed_by {
        what.push("deployer or their grants");
    }
    if what.is_empty() {
        what.push("limits");
    }
    what.join(", ")
}
