//! Function environments: built once per spec, then reused.

use basin_core::time::now_ms;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use basin_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::uv;

/// Bumped when the layout of an environment changes, so old ones are not reused.
const LAYOUT: u32 = 1;
/// Written last into a finished environment: its presence means "ready".
const MARKER: &str = "basin-env.json";

/// What an environment holds: a Python version and pinned packages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSpec {
    pub python: String,
    pub packages: BTreeMap<String, String>,
}

impl EnvSpec {
    /// What Basin says before building this environment the first time.
    pub fn building_note(&self) -> String {
        let packages: Vec<String> = self
            .packages
            .iter()
            .map(|(n, v)| format!("{n}=={v}"))
            .collect();
        format!(
            "building environment {} (Python {}, {}): once, then cached",
            self.hash(),
            self.python,
            packages.join(", ")
        )
    }

    pub fn new(python: impl Into<String>) -> Self {
        Self {
            python: python.into(),
            packages: BTreeMap::new(),
        }
    }

    pub fn with_package(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.packages
            .insert(name.into().to_ascii_lowercase(), version.into());
        self
    }

    /// The cache key: the same spec always gives the same hash (packages are sorted).
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_string(&(LAYOUT, crate::sdk::digest(), self))
            .expect("a spec serializes");
        let digest = Sha256::digest(canonical.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// A ready environment.
#[derive(Clone, Debug)]
pub struct Env {
    pub hash: String,
    pub path: PathBuf,
    pub python: PathBuf,
    /// True when this call built it; false on a cache hit.
    pub built: bool,
}

/// An environment as listed by `basin env ls`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvInfo {
    pub hash: String,
    pub spec: EnvSpec,
    pub built_at_ms: i64,
    #[serde(default)]
    pub last_used_ms: i64,
    #[serde(default)]
    pub bytes: u64,
}

/// The folder of environments, one per spec hash.
#[derive(Clone, Debug)]
pub struct EnvCache {
    root: PathBuf,
    tools: PathBuf,
    search_path: Option<OsString>,
    /// Build packages that have no wheel from source (their build code runs unconfined).
    source_builds: bool,
}

/// The hint for a package without a wheel while source builds are off.
const NO_WHEEL_HINT: &str = "Basin installs packages only from wheels: building one from source \
    runs the package's build code on this machine, outside any function's walls. Pin a version \
    that has a wheel for this Python and platform, or, for packages you trust, set \
    `[functions] build_from_source = true` in basin.toml";

fn io_error(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io_with(&what, e)
}

impl EnvCache {
    /// Environments live in `root`; `uv` is looked for on the process's PATH, else
    /// installed into `tools`.
    pub fn new(root: impl Into<PathBuf>, tools: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            tools: tools.into(),
            search_path: std::env::var_os("PATH"),
            source_builds: false,
        }
    }

    /// Whether a package without a wheel is built from source (default: no, and the build
    /// fails with a hint). A build runs the package's own code (`setup.py`, a build backend)
    /// as the user running Basin, outside the walls functions run in.
    pub fn with_source_builds(mut self, allowed: bool) -> Self {
        self.source_builds = allowed;
        self
    }

    /// Where to look for `uv` instead of PATH (`None`: not on PATH; then beside the running
    /// binary, then in `tools`).
    pub fn with_search_path(mut self, search_path: Option<OsString>) -> Self {
        self.search_path = search_path;
        self
    }

    /// The environment for `spec`: a lookup when it exists, else a build. Concurrent callers
    /// (threads or processes) build one spec once; a failed build leaves nothing behind.
    pub async fn resolve(&self, spec: &EnvSpec) -> Result<Env> {
        let hash = spec.hash();
        let path = self.root.join(&hash);
        let python = path.join("bin").join("python");
        if let Some(env) = self.ready(&hash, &path, &python) {
            return Ok(env);
        }
        std::fs::create_dir_all(&self.root)
            .map_err(io_error(format!("cannot create {}", self.root.display())))?;
        let lock_path = self.root.join(format!("{hash}.lock"));
        let lock = std::fs::File::create(&lock_path)
            .map_err(io_error(format!("cannot create {}", lock_path.display())))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|_| lock))
            .await
            .map_err(|e| Error::internal(format!("waiting for an environment lock: {e}")))?
            .map_err(io_error("cannot lock the environment"))?;
        if let Some(env) = self.ready(&hash, &path, &python) {
            return Ok(env); // built by someone else while we waited
        }
        let staging = self
            .root
            .join(format!(".tmp-{hash}-{}", basin_core::ids::random()));
        let built = self.build(spec, &staging).await;
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let info = EnvInfo {
            hash: hash.clone(),
            spec: spec.clone(),
            built_at_ms: now_ms(),
            last_used_ms: now_ms(),
            bytes: 0,
        };
        let marker = serde_json::to_vec_pretty(&info)
            .map_err(|e| Error::internal(format!("env marker: {e}")))?;
        std::fs::write(staging.join(MARKER), marker)
            .map_err(io_error("cannot write the environment marker"))?;
        // One rename publishes the environment whole.
        std::fs::rename(&staging, &path)
            .map_err(io_error(format!("cannot publish {}", path.display())))?;
        drop(lock);
        Ok(Env {
            hash,
            path,
            python,
            built: true,
        })
    }

    /// True when `spec`'s environment exists (resolving it needs no build).
    pub fn is_ready(&self, spec: &EnvSpec) -> bool {
        self.root.join(spec.hash()).join(MARKER).is_file()
    }

    fn ready(&self, hash: &str, path: &Path, python: &Path) -> Option<Env> {
        let marker = path.join(MARKER);
        let file = std::fs::File::options().append(true).open(&marker).ok()?;
        // The marker's mtime is "last used", for `basin env prune`.
        let _ = file.set_modified(SystemTime::now());
        Some(Env {
            hash: hash.to_string(),
            path: path.to_path_buf(),
            python: python.to_path_buf(),
            built: false,
        })
    }

    async fn build(&self, spec: &EnvSpec, staging: &Path) -> Result<()> {
        let uv = uv::find_or_install(&self.tools, self.search_path.as_ref()).await?;
        let venv = uv::run_checked(
            Command::new(&uv)
                .arg("venv")
                .arg(staging)
                .args(["--python", &spec.python, "--quiet", "--no-project"])
                // Built in a staging folder, then renamed into place.
                .arg("--relocatable")
                // Only interpreters on this machine: nothing is downloaded at run time.
                .env("UV_PYTHON_DOWNLOADS", "never"),
            &format!("create a Python {} environment", spec.python),
        )
        .await;
        if let Err(e) = venv {
            let present = self.pythons(&uv).await;
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("Python {} is not available", spec.python),
            )
            .with_hint(format!(
                "Pythons on this machine: {present}; declare one of them"
            ))
            .with_source(e));
        }
        crate::sdk::install(staging)?;
        if spec.packages.is_empty() {
            return Ok(());
        }
        let requirements: Vec<String> = spec
            .packages
            .iter()
            .map(|(n, v)| format!("{n}=={v}"))
            .collect();
        let mut install = Command::new(&uv);
        install
            .args([
                "pip",
                "install",
                "--quiet",
                "--compile-bytecode",
                "--python",
            ])
            .arg(staging.join("bin").join("python"));
        if !self.source_builds {
            install.arg("--no-build");
        }
        uv::run_checked(
            install.args(&requirements),
            &format!("install {}", requirements.join(" ")),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            let hint = if e.message.contains("no usable wheels") {
                NO_WHEEL_HINT
            } else {
                "check the package names and pinned versions (the resolver's message above names the package)"
            };
            e.with_hint(hint)
        })
    }

    async fn pythons(&self, uv: &Path) -> String {
        let listed = Command::new(uv)
            .args([
                "python",
                "list",
                "--only-installed",
                "--output-format",
                "json",
            ])
            .env("UV_PYTHON_DOWNLOADS", "never")
            .output()
            .await;
        let mut versions: Vec<String> = listed
            .ok()
            .and_then(|o| serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).ok())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                p.get("version")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .collect();
        versions.sort();
        versions.dedup();
        if versions.is_empty() {
            "none found".to_string()
        } else {
            versions.join(", ")
        }
    }

    /// Every ready environment.
    pub fn list(&self) -> Result<Vec<EnvInfo>> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let marker = entry.path().join(MARKER);
            let Ok(text) = std::fs::read(&marker) else {
                continue;
            };
            let Ok(mut info) = serde_json::from_slice::<EnvInfo>(&text) else {
                continue;
            };
            info.last_used_ms = std::fs::metadata(&marker)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(info.built_at_ms, |d| d.as_millis() as i64);
            info.bytes = dir_size(&entry.path());
            found.push(info);
        }
        found.sort_by(|a, b| a.hash.cmp(&b.hash));
        Ok(found)
    }

    /// Removes the environments whose hash starts with `prefix`; returns their hashes.
    pub fn remove(&self, prefix: &str) -> Result<Vec<String>> {
        let matching: Vec<String> = self
            .list()?
            .into_iter()
            .map(|i| i.hash)
            .filter(|h| h.starts_with(prefix))
            .collect();
        if matching.is_empty() || prefix.is_empty() {
            return Err(
                Error::not_found(format!("no environment matches `{prefix}`"))
                    .with_hint("list them with `basin env ls`"),
            );
        }
        for hash in &matching {
            self.delete(hash)?;
        }
        Ok(matching)
    }

    /// Removes environments unused for `unused_for`, and leftovers of interrupted builds.
    pub fn prune(&self, unused_for: Duration) -> Result<Vec<String>> {
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let stale = self.stale(unused_for)?;
        for hash in &stale {
            self.delete(hash)?;
        }
        Ok(stale)
    }

    /// The environments unused for `unused_for` (what `prune` removes).
    pub fn stale(&self, unused_for: Duration) -> Result<Vec<String>> {
        let cutoff = now_ms() - unused_for.as_millis().min(i64::MAX as u128) as i64;
        Ok(self
            .list()?
            .into_iter()
            .filter(|i| i.last_used_ms < cutoff)
            .map(|i| i.hash)
            .collect())
    }

    fn delete(&self, hash: &str) -> Result<()> {
        // Renamed first so a half-deleted environment is never taken for a ready one.
        let path = self.root.join(hash);
        let doomed = self
            .root
            .join(format!(".tmp-rm-{hash}-{}", basin_core::ids::random()));
        std::fs::rename(&path, &doomed)
            .map_err(io_error(format!("cannot remove {}", path.display())))?;
        std::fs::remove_dir_all(&doomed)
            .map_err(io_error(format!("cannot remove {}", doomed.display())))
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
