//! Basin's configuration, declared once: `.basin/config.toml` (written by `basin init`), then
//! the user's `basin.toml` beside `.basin/`, then `BASIN_*` environment variables, then flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use basin_core::{Error, Result};
use basin_table::S3Settings;
use serde::{Deserialize, Serialize};

/// The environment variables Basin reads. The only place that reads the environment.
mod maintenance;
mod secrets;
mod server;
mod sql;

pub use maintenance::{DEFAULT_MAINTENANCE_SCHEDULE, MaintenanceSection, MaintenanceSettings};
pub use secrets::{Secret, SecretFrom, SecretSection};
pub use server::{ServerSection, ServerSettings, TlsFiles};
pub use sql::{BallistaSection, SqlSection, free_space};

pub mod env {
    pub const HOME: &str = "BASIN_HOME";
    pub const AUTHOR: &str = "BASIN_AUTHOR";
    pub const S3_ENDPOINT: &str = "BASIN_S3_ENDPOINT";
    pub const S3_REGION: &str = "BASIN_S3_REGION";
    pub const S3_ACCESS_KEY_ID: &str = "BASIN_S3_ACCESS_KEY_ID";
    pub const S3_SECRET_ACCESS_KEY: &str = "BASIN_S3_SECRET_ACCESS_KEY";
    pub const S3_SESSION_TOKEN: &str = "BASIN_S3_SESSION_TOKEN";
    pub const S3_PATH_STYLE: &str = "BASIN_S3_PATH_STYLE";
    pub const KEEP_ALIVE_SECONDS: &str = "BASIN_KEEP_ALIVE_SECONDS";
    pub const MAX_CONCURRENCY: &str = "BASIN_MAX_CONCURRENCY";
    /// This process's name in the events it runs (default: host name and process id).
    pub const NODE_NAME: &str = "BASIN_NODE_NAME";
    /// The user-level cache (function environments, `uv`); see `user_cache_dir`.
    pub const CACHE_DIR: &str = "BASIN_CACHE_DIR";
    const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
    const USER_HOME: &str = "HOME";

    /// Where Basin caches what every lakehouse of this user can share: `BASIN_CACHE_DIR`,
    /// else `$XDG_CACHE_HOME/basin`, else `~/.cache/basin` (as uv and pip keep theirs);
    /// `None` when none of them is set.
    pub fn user_cache_dir() -> Option<std::path::PathBuf> {
        if let Some(dir) = get(CACHE_DIR) {
            return Some(dir.into());
        }
        if let Some(dir) = get(XDG_CACHE_HOME) {
            return Some(std::path::PathBuf::from(dir).join("basin"));
        }
        get(USER_HOME).map(|home| std::path::PathBuf::from(home).join(".cache").join("basin"))
    }

    /// A variable a function declared as a secret (`@basin.python(secrets=[...])`).
    pub(crate) fn secret(name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    pub(crate) fn get(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    /// A numeric variable, if set; `what` says what it should be when it is not one.
    pub(crate) fn number<T: std::str::FromStr>(
        name: &str,
        what: &str,
    ) -> basin_core::Result<Option<T>> {
        get(name)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| basin_core::Error::invalid(format!("{name}={v} is not {what}")))
            })
            .transpose()
    }
}

/// A TOML file that does not parse, or does not fit what it should hold: the error names
/// the file, the line and the column, shows the line with a caret under the place (toml's
/// message alone names none of them), and for a mistyped key says which one was meant.
/// `hint` is where to read more.
pub(crate) fn toml_error(path: &Path, text: &str, e: &toml::de::Error, hint: &str) -> Error {
    let message = e.message().trim_end();
    let (at, snippet) = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let shown = text[start..]
                .split('\n')
                .next()
                .unwrap_or("")
                .trim_end_matches('\r');
            let column = before[start..].chars().count() + 1;
            // The caret spans the place, within its line (at least one character).
            let width = text
                .get(span.clone())
                .map_or(1, |s| s.split('\n').next().unwrap_or("").chars().count())
                .max(1);
            let gutter = " ".repeat(line.to_string().len());
            let pad: String = before[start..]
                .chars()
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            (
                format!(":{line}:{column}"),
                format!(
                    "\n{gutter} |\n{line} | {shown}\n{gutter} | {pad}{}",
                    "^".repeat(width)
                ),
            )
        }
        None => (String::new(), String::new()),
    };
    let error = Error::invalid(format!("{}{at}: {message}{snippet}", path.display()));
    let meant = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once("`, expected "))
        .and_then(|(field, expected)| {
            let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            basin_core::suggest(field, known)
        });
    match (meant, hint) {
        (Some(meant), "") => error.with_hint(format!("did you mean `{meant}`?")),
        (Some(meant), hint) => error.with_hint(format!("did you mean `{meant}`? ({hint})")),
        (None, "") => error,
        (None, hint) => error.with_hint(hint),
    }
}

/// `[functions] event_lease` when unset.
pub const DEFAULT_EVENT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);
/// `[functions] model_worker_wait` when unset.
pub const DEFAULT_MODEL_WORKER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `.basin/config.toml`: what `basin init` decided.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LakehouseConfig {
    pub warehouse: WarehouseConfig,
    /// Where the catalog lives when it is not `.basin/catalog.db`: a Postgres database that
    /// several nodes share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CatalogConfig {
    /// `postgres://USER@HOST:PORT/DATABASE`, never with a password (libpq's `PGPASSWORD` or
    /// `~/.pgpass` give it).
    pub url: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WarehouseConfig {
    /// An absolute local path, or `s3://bucket/prefix`.
    pub location: String,
}

/// `basin.toml`: the user's settings for this lakehouse (all optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    #[serde(default)]
    pub s3: S3Config,
    #[serde(default)]
    pub user: UserSection,
    #[serde(default)]
    pub functions: FunctionsSection,
    #[serde(default)]
    pub pricing: PricingSection,
    #[serde(default)]
    pub sql: SqlSection,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub maintenance: MaintenanceSection,
    /// Buckets that are not folders under `.basin/buckets/`: `[buckets.NAME]`.
    #[serde(default)]
    pub buckets: BTreeMap<String, BucketSection>,
    /// Databases to ingest from: `[sources.NAME]` (see `crate::sources`).
    #[serde(default)]
    pub sources: BTreeMap<String, crate::sources::SourceSection>,
    /// What functions may read as secrets: `[secrets]` (see `config::secrets`).
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSection>,
    /// A pipeline project's sections (read by `basin run`, not here).
    pub project: Option<toml::Value>,
    /// Triggers declared beside the code (read by `basin deploy`, not here).
    pub triggers: Option<toml::Value>,
    pub parameters: Option<toml::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionsSection {
    /// Seconds an idle environment's worker stays warm.
    pub keep_alive_seconds: Option<f64>,
    /// Invocations running at once, over all functions.
    pub max_concurrency: Option<usize>,
    /// Lines of a function's output (stdout and stderr) kept in memory per invocation.
    pub max_output_lines: Option<usize>,
    /// Bytes of a function's output kept in memory per invocation.
    pub max_output_size: Option<SizeValue>,
    /// The longest reply Basin reads from a function (a JSON result, a batch's results).
    pub max_reply_size: Option<SizeValue>,
    /// "strict" (refuse to run functions while a wall is missing) or "best-effort"; unset:
    /// strict when this machine builds every wall.
    pub isolation: Option<String>,
    /// Walls not to build (processes, network, internet, files, sockets, signals, limits, memory).
    pub disable_walls: Option<Vec<String>>,
    /// Build a pinned package that has no wheel from source: its build code then runs
    /// unconfined as the user running Basin. Off by default.
    pub build_from_source: Option<bool>,
    /// Processes and threads of one invocation.
    pub max_processes: Option<u64>,
    /// How far below Basin's CPU priority functions run (steps of Linux nice, 0-19).
    pub nice: Option<u8>,
    /// Open files of one function process.
    pub max_open_files: Option<u64>,
    /// What one invocation may write into its folder (in memory): any one file, and all.
    pub max_folder_size: Option<SizeValue>,
    /// Shared memory kept allocated between invocations for the tables handed to and from
    /// functions; "0" for none.
    pub handoff_pool: Option<SizeValue>,
    /// A table a function returns up to this size is copied, and Basin goes on without
    /// waiting for the function's processes to end; a larger one is mapped after they have.
    pub copy_outputs_below: Option<SizeValue>,
    /// How long a node holds a triggered event it runs without renewing its lease (it renews
    /// every third of it); a dead node's events run elsewhere this soon after.
    pub event_lease: Option<DurationValue>,
    /// On a shared catalog: how long a pipeline's model waits for another node to take it
    /// before the node running `basin run` runs it itself; "0s" runs every model there.
    pub model_worker_wait: Option<DurationValue>,
}

/// A size in basin.toml: a number of bytes, or `"512MiB"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn bytes(&self, setting: &str) -> Result<u64> {
        match self {
            SizeValue::Bytes(n) => Ok(*n),
            // As the number 0 is (`handoff_pool = "0"`: none).
            SizeValue::Text(t) if t.trim() == "0" => Ok(0),
            SizeValue::Text(t) => basin_core::units::parse_size(t).map_err(|e| {
                Error::invalid(format!("{setting}: {}", e.message))
                    .with_hint("write e.g. \"512MiB\" or \"4GiB\"")
            }),
        }
    }

    /// A size of something held in memory: at least `at_least` bytes (smaller is raised).
    fn in_memory(&self, setting: &str, at_least: usize) -> Result<usize> {
        let bytes = self.bytes(setting)?;
        Ok(usize::try_from(bytes).unwrap_or(usize::MAX).max(at_least))
    }
}

/// A duration in basin.toml: seconds, or `"30s"`, `"5m"`; `0` or `"off"`: no limit.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(f64),
    Text(String),
}

impl DurationValue {
    fn limit(&self, setting: &str) -> Result<Option<std::time::Duration>> {
        match self {
            DurationValue::Seconds(s) if *s == 0.0 => Ok(None),
            // Positive and at most u64::MAX seconds (`1e300` is no duration).
            DurationValue::Seconds(s) if std::time::Duration::try_from_secs_f64(*s).is_ok() => {
                Ok(Some(std::time::Duration::from_secs_f64(*s)))
            }
            DurationValue::Text(t) if matches!(t.trim(), "off" | "none" | "0") => Ok(None),
            DurationValue::Text(t) => basin_core::units::parse_duration(t).map(Some).map_err(|e| {
                Error::invalid(format!("{setting}: {}", e.message))
                    .with_hint("write e.g. \"30s\" or \"5m\", or \"off\"")
            }),
            DurationValue::Seconds(s) => {
                Err(Error::invalid(format!("{setting}: {s} is not a duration")))
            }
        }
    }
}

/// `[buckets.NAME]`: a bucket that is not `.basin/buckets/NAME/`. Either a local folder
/// (`path`, watched like the default ones), or a bucket in an S3-compatible store (`url`,
/// with the `[s3]` section's endpoint and keys), listed every `poll_seconds` and told about
/// objects by webhooks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSection {
    /// A folder; relative paths are relative to basin.toml's folder.
    pub path: Option<PathBuf>,
    /// `s3://BUCKET/PREFIX`: the bucket's objects are the ones under PREFIX.
    pub url: Option<String>,
    /// How often to list an S3 bucket (default 30 s).
    pub poll_seconds: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingSection {
    pub gb_second: Option<f64>,
    pub per_million_requests: Option<f64>,
    pub per_tb_scanned: Option<f64>,
}

/// What `basin usage` charges: by default AWS's list prices (us-east-1), so users see what
/// the same work would cost there: Lambda's (x86) for functions, Athena's for queries.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pricing {
    pub gb_second: f64,
    pub per_million_requests: f64,
    /// Dollars per TB (2^40 bytes) a query scans.
    pub per_tb_scanned: f64,
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            gb_second: 0.0000166667,
            per_million_requests: 0.20,
            per_tb_scanned: 5.0,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub path_style: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    pub name: Option<String>,
}

/// Everything resolved: what the rest of Basin reads.
#[derive(Clone, Debug)]
pub struct Settings {
    pub s3: S3Settings,
    pub author: String,
    pub runtime: basin_runtime::RuntimeOptions,
    /// `[functions] build_from_source`: packages without a wheel are built (unconfined).
    pub build_from_source: bool,
    pub pricing: Pricing,
    /// S3 buckets for object triggers, by name.
    pub s3_buckets: BTreeMap<String, crate::triggers::s3::S3Bucket>,
    /// Buckets in local folders of the user's choosing, by name.
    pub bucket_folders: BTreeMap<String, PathBuf>,
    pub sql: basin_sql::SqlLimits,
    pub server: ServerSettings,
    pub maintenance: MaintenanceSettings,
    /// Database sources, by name.
    pub sources: BTreeMap<String, crate::sources::SourceConfig>,
    /// `[secrets]`: the secrets functions may ask for, by name.
    pub secrets: BTreeMap<String, Secret>,
    /// `[functions] event_lease`.
    pub event_lease: std::time::Duration,
    /// `[functions] model_worker_wait`.
    pub model_worker_wait: std::time::Duration,
}

impl Settings {
    /// Layers `basin.toml` in `dir` (if any) and the environment.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_file(dir, &dir.join("basin.toml"))
    }

    /// Layers the settings file `path` (if any; paths in it are relative to `dir`) and the
    /// environment.
    pub(crate) fn load_file(dir: &Path, path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        let user: UserConfig = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                toml_error(
                    &path,
                    &text,
                    &e,
                    "see the configuration reference in docs/configuration.md",
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => UserConfig::default(),
            Err(e) => {
                return Err(Error::io(format!("cannot read {}", path.display())).with_source(e));
            }
        };
        let s3 = S3Settings {
            endpoint: env::get(env::S3_ENDPOINT).or(user.s3.endpoint),
            region: env::get(env::S3_REGION).or(user.s3.region),
            access_key_id: env::get(env::S3_ACCESS_KEY_ID).or(user.s3.access_key_id),
            secret_access_key: env::get(env::S3_SECRET_ACCESS_KEY).or(user.s3.secret_access_key),
            session_token: env::get(env::S3_SESSION_TOKEN).or(user.s3.session_token),
            path_style: env::get(env::S3_PATH_STYLE)
                .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
                .or(user.s3.path_style)
                .unwrap_or(true),
        };
        let author = env::get(env::AUTHOR)
            .or(user.user.name)
            .or_else(|| env::get("USER"))
            .unwrap_or_else(|| "basin".to_string());
        let mut runtime = basin_runtime::RuntimeOptions::default();
        let keep_alive = env::number::<f64>(env::KEEP_ALIVE_SECONDS, "a number of seconds")?
            .or(user.functions.keep_alive_seconds);
        if let Some(seconds) = keep_alive {
            runtime.keep_alive =
                std::time::Duration::try_from_secs_f64(seconds.max(0.0)).map_err(|_| {
                    Error::invalid(format!(
                        "{}: [functions] keep_alive_seconds: {seconds} is not a number of seconds",
                        path.display()
                    ))
                })?;
        }
        let concurrency = env::number::<usize>(env::MAX_CONCURRENCY, "a whole number")?
            .or(user.functions.max_concurrency);
        if let Some(n) = concurrency {
            runtime.max_concurrency = n.max(1);
        }
        if let Some(n) = user.functions.max_output_lines {
            runtime.max_output_lines = n.max(1);
        }
        let setting = |section: &str, name: &str| format!("{}: [{section}] {name}", path.display());
        let f = &user.functions;
        if let Some(mode) = &f.isolation {
            runtime.isolation = Some(basin_runtime::Isolation::parse(mode).map_err(|e| {
                Error::invalid(format!("{}: {}", path.display(), e.message))
                    .with_hint(e.hint.unwrap_or_default())
            })?);
        }
        if let Some(walls) = &f.disable_walls {
            if let Some(unknown) = walls
                .iter()
                .find(|w| !basin_runtime::WALL_NAMES.contains(&w.as_str()))
            {
                return Err(Error::invalid(format!(
                    "{}: `{unknown}` is not a wall",
                    setting("functions", "disable_walls")
                ))
                .with_hint(format!(
                    "the walls are {}",
                    basin_runtime::WALL_NAMES.join(", ")
                )));
            }
            runtime.disable_walls = walls.clone();
        }
        if let Some(n) = f.max_processes {
            runtime.max_processes = n.max(1);
        }
        if let Some(n) = f.nice {
            if n > 19 {
                return Err(Error::invalid(format!(
                    "{}: {n} is not a nice value",
                    setting("functions", "nice")
                ))
                .with_hint("give 0 (the same priority as Basin) to 19 (the lowest)"));
            }
            runtime.nice = n;
        }
        if let Some(n) = f.max_open_files {
            runtime.max_open_files = n.max(16);
        }
        if let Some(v) = &f.max_folder_size {
            runtime.max_folder_size = v.bytes(&setting("functions", "max_folder_size"))?;
        }
        if let Some(v) = &f.handoff_pool {
            runtime.handoff_pool = v.bytes(&setting("functions", "handoff_pool"))?;
        }
        if let Some(v) = &f.max_output_size {
            runtime.max_output_size = v.in_memory(&setting("functions", "max_output_size"), 1)?;
        }
        if let Some(v) = &f.max_reply_size {
            runtime.max_reply_size = v.bytes(&setting("functions", "max_reply_size"))?.max(1);
        }
        if let Some(v) = &f.copy_outputs_below {
            runtime.copy_outputs_below = v.bytes(&setting("functions", "copy_outputs_below"))?;
        }
        let sql = sql::resolve(&user.sql, dir, &setting)?;
        let server = server::resolve(&user.server, dir, &|name| setting("server", name))?;
        let defaults = Pricing::default();
        let pricing = Pricing {
            gb_second: user.pricing.gb_second.unwrap_or(defaults.gb_second),
            per_million_requests: user
                .pricing
                .per_million_requests
                .unwrap_or(defaults.per_million_requests),
            per_tb_scanned: user
                .pricing
                .per_tb_scanned
                .unwrap_or(defaults.per_tb_scanned),
        };
        let mut s3_buckets = BTreeMap::new();
        let mut bucket_folders = BTreeMap::new();
        for (name, section) in &user.buckets {
            let refuse = |message: String, hint: &str| {
                Error::invalid(format!("{}: [buckets.{name}]: {message}", path.display()))
                    .with_hint(hint.to_string())
            };
            match (&section.url, &section.path) {
                (Some(url), None) => {
                    let bucket =
                        crate::triggers::s3::S3Bucket::parse(name, url, section.poll_seconds)
                            .map_err(|e| {
                                refuse(e.message.clone(), e.hint.as_deref().unwrap_or_default())
                            })?;
                    s3_buckets.insert(name.clone(), bucket);
                }
                (None, Some(folder)) => {
                    bucket_folders.insert(name.clone(), dir.join(folder));
                }
                _ => {
                    return Err(refuse(
                        "give either `url` or `path`".into(),
                        "url = \"s3://BUCKET/PREFIX\" for an S3 bucket, path = \"/srv/landing\" for a folder",
                    ));
                }
            }
        }
        let maintenance = user
            .maintenance
            .resolve(&|name| setting("maintenance", name))?;
        let sources = crate::sources::resolve(&user.sources, &path)?;
        let passwords: Vec<String> = sources
            .values()
            .filter_map(|s| s.password_env.clone())
            .collect();
        let secrets = secrets::resolve(&user.secrets, &passwords, dir)?;
        let event_lease = match &user.functions.event_lease {
            Some(v) => v
                .limit(&setting("functions", "event_lease"))?
                .filter(|d| *d >= std::time::Duration::from_secs(1))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: at least one second",
                        setting("functions", "event_lease")
                    ))
                    .with_hint("a lease is renewed every third of it; \"30s\" is the default")
                })?,
            None => DEFAULT_EVENT_LEASE,
        };
        let model_worker_wait = match &user.functions.model_worker_wait {
            Some(v) => v
                .limit(&setting("functions", "model_worker_wait"))?
                .unwrap_or_default(),
            None => DEFAULT_MODEL_WORKER_WAIT,
        };
        Ok(Self {
            s3,
            author,
            runtime,
            build_from_source: user.functions.build_from_source.unwrap_or(false),
            pricing,
            s3_buckets,
            bucket_folders,
            sql,
            server,
            maintenance,
            sources,
            secrets,
            event_lease,
            model_worker_wait,
        })
    }

    /// Whether an S3 endpoint or keys are configured at all.
    pub fn has_s3(&self) -> bool {
        self.s3.endpoint.is_some() || self.s3.access_key_id.is_some()
    }
}

/// The lakehouse that holds `start`: `start/.basin`, or the nearest parent's, like git.
pub fn discover(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(crate::BASIN_DIR).is_dir())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests;
