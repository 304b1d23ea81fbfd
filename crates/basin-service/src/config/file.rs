//! The files as written: `.basin/config.toml` and the sections of `basin.toml`, before
//! anything is resolved.

use crate::config::DurationValue;
use crate::config::MaintenanceSection;
use crate::config::SecretSection;
use crate::config::ServerSection;
use crate::config::SizeValue;
use crate::config::SqlSection;
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    pub warehouse: WarehouseSection,
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
    pub sources: BTreeMap<String, super::SourceSection>,
    /// What functions may read as secrets: `[secrets]` (see `config::secrets`).
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSection>,
    /// `[[branches.protect]]` (see `config::protection`).
    #[serde(default)]
    pub branches: super::protection::BranchesSection,
    /// `[auth.oidc]` (see `config::auth`).
    #[serde(default)]
    pub auth: super::auth::AuthSection,
    /// `[[grants]]` (see `config::grants`).
    #[serde(default)]
    pub grants: Vec<super::grants::GrantSection>,
    /// `[checks.NAME]`: what a merge into a protected branch must pass.
    #[serde(default)]
    pub checks: BTreeMap<String, super::protection::CheckSection>,
    /// The declared lakehouse (read by `basin plan` and `basin apply`, not here; see
    /// `crate::declared`): `[namespaces.NAME]`, `[tables."NS.TABLE"]`, `[tags.NAME]`,
    /// `[tokens.NAME]`, `[deploy]`, and the named `[branches.NAME]`.
    pub namespaces: Option<toml::Value>,
    pub tables: Option<toml::Value>,
    pub tags: Option<toml::Value>,
    pub tokens: Option<toml::Value>,
    pub deploy: Option<toml::Value>,
    /// A pipeline project's sections (read by `basin run`, not here).
    pub project: Option<toml::Value>,
    /// Triggers declared beside the code (read by `basin deploy`, not here).
    pub triggers: Option<toml::Value>,
    pub parameters: Option<toml::Value>,
}

/// `[warehouse]` in basin.toml (where the warehouse itself is was decided by `basin init`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseSection {
    /// Folders outside the warehouse whose files tables may name: what `basin table
    /// add-files` adds in place. Basin reads them and never deletes them.
    #[serde(default)]
    pub external_locations: Vec<String>,
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
    /// Keep a function's confined process after an invocation for the next invocation of the
    /// same function version, environment, limits and secrets (default true).
    pub reuse: Option<bool>,
    /// How long a kept process waits for its next invocation ("60s").
    pub keep_warm: Option<DurationValue>,
    /// A kept process ends after this many invocations.
    pub max_uses: Option<u64>,
    /// Kept processes waiting for an invocation, at most (the one idle longest ends first).
    pub max_kept: Option<usize>,
    /// On a shared catalog: how long a pipeline's model waits for another node to take it
    /// before the node running `basin run` runs it itself; "0s" runs every model there.
    pub model_worker_wait: Option<DurationValue>,
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
