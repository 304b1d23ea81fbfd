//! Everything resolved: the files, the environment and the defaults read into [`Settings`],
//! what the rest of Basin reads.

use super::BASIN_DIR;
use crate::ServerSettings;
use crate::config::BucketSection;
use crate::config::DEFAULT_EVENT_LEASE;
use crate::config::DEFAULT_MODEL_WORKER_WAIT;
use crate::config::FunctionsSection;
use crate::config::MaintenanceSettings;
use crate::config::Pricing;
use crate::config::PricingSection;
use crate::config::S3Config;
use crate::config::Secret;
use crate::config::SecretSection;
use crate::config::UserConfig;
use crate::config::env;
use crate::config::secrets;
use crate::config::server;
use crate::config::sql;
use crate::config::toml_error;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use basin_core::{Error, Result};
use basin_table::S3Settings;

/// Everything resolved: what the rest of Basin reads.
#[derive(Clone, Debug)]
pub struct Settings {
    pub s3: S3Settings,
    /// `[warehouse] external_locations`, local ones made absolute.
    pub external_locations: Vec<String>,
    pub author: String,
    pub runtime: basin_runtime::RuntimeOptions,
    /// `[functions] build_from_source`: packages without a wheel are built (unconfined).
    pub build_from_source: bool,
    pub pricing: Pricing,
    /// S3 buckets for object triggers, by name.
    pub s3_buckets: BTreeMap<String, super::S3Bucket>,
    /// Buckets in local folders of the user's choosing, by name.
    pub bucket_folders: BTreeMap<String, PathBuf>,
    pub sql: basin_sql::SqlLimits,
    pub server: ServerSettings,
    pub maintenance: MaintenanceSettings,
    /// Database sources, by name.
    pub sources: BTreeMap<String, super::SourceConfig>,
    /// `[secrets]`: the secrets functions may ask for, by name.
    pub secrets: BTreeMap<String, Secret>,
    /// `[functions] event_lease`.
    pub event_lease: std::time::Duration,
    /// `[functions] model_worker_wait`.
    pub model_worker_wait: std::time::Duration,
    /// `[[branches.protect]]`.
    pub protection: basin_catalog::Protection,
    /// `[checks.NAME]`, by name.
    pub checks: BTreeMap<String, crate::config::Check>,
    /// `[[grants]]`.
    pub grants: Vec<crate::config::DeclaredGrants>,
    /// `[auth.oidc]`: sign-in tokens from this issuer are accepted.
    pub oidc: Option<crate::config::OidcSettings>,
}

impl Settings {
    /// Layers `basin.toml` in `dir` (if any) and the environment.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_file(dir, &dir.join("basin.toml"))
    }

    /// Layers the settings file `path` (if any; paths in it are relative to `dir`) and the
    /// environment.
    pub(crate) fn load_file(dir: &Path, path: &Path) -> Result<Self> {
        let user = read_user_config(path)?;
        let setting = |section: &str, name: &str| format!("{}: [{section}] {name}", path.display());
        let s3 = s3_settings(user.s3);
        let external_locations = user
            .warehouse
            .external_locations
            .iter()
            .map(|l| match l.starts_with("s3://") {
                true => l.clone(),
                // Its real path: files are checked by theirs, links resolved.
                false => std::fs::canonicalize(dir.join(l))
                    .unwrap_or_else(|_| dir.join(l))
                    .display()
                    .to_string(),
            })
            .collect();
        let author = author(user.user.name);
        let runtime = runtime_options(&user.functions, path, &setting)?;
        let sql = sql::resolve(&user.sql, dir, &setting)?;
        let server = server::resolve(&user.server, dir, &|name| setting("server", name))?;
        let pricing = pricing(&user.pricing);
        let (s3_buckets, bucket_folders) = buckets(&user.buckets, dir, path)?;
        let maintenance = user
            .maintenance
            .resolve(&|name| setting("maintenance", name))?;
        let (sources, secrets) = sources_and_secrets(&user.sources, &user.secrets, dir, path)?;
        let event_lease = event_lease(&user.functions, &setting)?;
        let model_worker_wait = model_worker_wait(&user.functions, &setting)?;
        let (protection, checks) =
            crate::config::protection::resolve(&user.branches, &user.checks, path)?;
        let grants = crate::config::grants::resolve(&user.grants, path)?;
        let oidc = crate::config::auth::resolve(&user.auth, path)?;
        Ok(Self {
            s3,
            external_locations,
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
            protection,
            checks,
            grants,
            oidc,
        })
    }

    /// Whether an S3 endpoint or keys are configured at all.
    pub fn has_s3(&self) -> bool {
        self.s3.endpoint.is_some() || self.s3.access_key_id.is_some()
    }
}

/// Names a setting in errors: `FILE: [SECTION] NAME`.
type Setting<'a> = &'a dyn Fn(&str, &str) -> String;

/// The settings file as written; an empty one when there is no file.
fn read_user_config(path: &Path) -> Result<UserConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            toml_error(
                path,
                &text,
                &e,
                "see the configuration reference in docs/configuration.md",
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UserConfig::default()),
        Err(e) => Err(Error::io(format!("cannot read {}", path.display())).with_source(e)),
    }
}

/// `[s3]`, each key overridden by its `BASIN_S3_*` variable.
fn s3_settings(written: S3Config) -> S3Settings {
    S3Settings {
        endpoint: env::get(env::S3_ENDPOINT).or(written.endpoint),
        region: env::get(env::S3_REGION).or(written.region),
        access_key_id: env::get(env::S3_ACCESS_KEY_ID).or(written.access_key_id),
        secret_access_key: env::get(env::S3_SECRET_ACCESS_KEY).or(written.secret_access_key),
        session_token: env::get(env::S3_SESSION_TOKEN).or(written.session_token),
        path_style: env::get(env::S3_PATH_STYLE)
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
            .or(written.path_style)
            .unwrap_or(true),
    }
}

/// Who commits: `BASIN_AUTHOR`, then `[user] name`, then the login name.
fn author(written: Option<String>) -> String {
    env::get(env::AUTHOR)
        .or(written)
        .or_else(|| env::get("USER"))
        .unwrap_or_else(|| "basin".to_string())
}

/// `[functions]`' limits on the runtime, with their environment variables.
fn runtime_options(
    f: &FunctionsSection,
    path: &Path,
    setting: Setting,
) -> Result<basin_runtime::RuntimeOptions> {
    let mut runtime = basin_runtime::RuntimeOptions::default();
    let keep_alive = env::number::<f64>(env::KEEP_ALIVE_SECONDS, "a number of seconds")?
        .or(f.keep_alive_seconds);
    if let Some(seconds) = keep_alive {
        runtime.keep_alive =
            std::time::Duration::try_from_secs_f64(seconds.max(0.0)).map_err(|_| {
                Error::invalid(format!(
                    "{}: [functions] keep_alive_seconds: {seconds} is not a number of seconds",
                    path.display()
                ))
            })?;
    }
    let concurrency =
        env::number::<usize>(env::MAX_CONCURRENCY, "a whole number")?.or(f.max_concurrency);
    if let Some(n) = concurrency {
        runtime.max_concurrency = n.max(1);
    }
    if let Some(n) = f.max_output_lines {
        runtime.max_output_lines = n.max(1);
    }
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
    reuse_options(f, setting, &mut runtime)?;
    Ok(runtime)
}

/// `[functions] reuse`, `keep_warm`, `max_uses` and `max_kept`: kept processes.
fn reuse_options(
    f: &FunctionsSection,
    setting: Setting,
    runtime: &mut basin_runtime::RuntimeOptions,
) -> Result<()> {
    if let Some(reuse) = f.reuse {
        runtime.reuse = reuse;
    }
    if let Some(v) = &f.keep_warm {
        // "off" or 0: a process is not kept at all.
        match v.limit(&setting("functions", "keep_warm"))? {
            Some(d) => runtime.keep_warm = d,
            None => runtime.reuse = false,
        }
    }
    if let Some(n) = f.max_uses {
        runtime.max_uses = n;
    }
    if let Some(n) = f.max_kept {
        runtime.max_kept = n;
    }
    Ok(())
}

/// `[pricing]`, each price defaulted.
fn pricing(written: &PricingSection) -> Pricing {
    let defaults = Pricing::default();
    Pricing {
        gb_second: written.gb_second.unwrap_or(defaults.gb_second),
        per_million_requests: written
            .per_million_requests
            .unwrap_or(defaults.per_million_requests),
        per_tb_scanned: written.per_tb_scanned.unwrap_or(defaults.per_tb_scanned),
    }
}

/// `[buckets.NAME]`: the S3 buckets by name, and the local folders (relative to `dir`) by
/// name.
fn buckets(
    sections: &BTreeMap<String, BucketSection>,
    dir: &Path,
    path: &Path,
) -> Result<(BTreeMap<String, super::S3Bucket>, BTreeMap<String, PathBuf>)> {
    let mut s3_buckets = BTreeMap::new();
    let mut bucket_folders = BTreeMap::new();
    for (name, section) in sections {
        let refuse = |message: String, hint: &str| {
            Error::invalid(format!("{}: [buckets.{name}]: {message}", path.display()))
                .with_hint(hint.to_string())
        };
        match (&section.url, &section.path) {
            (Some(url), None) => {
                let bucket =
                    super::S3Bucket::parse(name, url, section.poll_seconds).map_err(|e| {
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
    Ok((s3_buckets, bucket_folders))
}

/// `[sources.NAME]` and `[secrets]`, checked together: a source's password variable is no
/// secret a function may ask for.
fn sources_and_secrets(
    sources: &BTreeMap<String, super::SourceSection>,
    secrets: &BTreeMap<String, SecretSection>,
    dir: &Path,
    path: &Path,
) -> Result<(
    BTreeMap<String, super::SourceConfig>,
    BTreeMap<String, Secret>,
)> {
    let sources = super::sources::resolve(sources, path)?;
    let passwords: Vec<String> = sources
        .values()
        .filter_map(|s| s.password_env.clone())
        .collect();
    let secrets = secrets::resolve(secrets, &passwords, dir)?;
    Ok((sources, secrets))
}

/// `[functions] event_lease`: at least a second.
fn event_lease(f: &FunctionsSection, setting: Setting) -> Result<std::time::Duration> {
    Ok(match &f.event_lease {
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
    })
}

/// `[functions] model_worker_wait`.
fn model_worker_wait(f: &FunctionsSection, setting: Setting) -> Result<std::time::Duration> {
    Ok(match &f.model_worker_wait {
        Some(v) => v
            .limit(&setting("functions", "model_worker_wait"))?
            .unwrap_or_default(),
        None => DEFAULT_MODEL_WORKER_WAIT,
    })
}

/// The lakehouse that holds `start`: `start/.basin`, or the nearest parent's, like git.
pub fn discover(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(BASIN_DIR).is_dir())
        .map(Path::to_path_buf)
}
