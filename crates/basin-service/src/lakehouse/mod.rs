//! Opening and creating a lakehouse folder, and what every operation stands on: its
//! settings, catalog, warehouse, SQL engine and function runtime, and resolving a ref.
//!
//! The operations themselves are on handles, one per domain, each defined in its domain's
//! file: `lake.refs()`, `lake.tables()`, `lake.namespaces()`, ... (docs/architecture.md).

pub(crate) mod add_files;
pub(crate) mod audit;
pub(crate) mod checks;
pub(crate) mod graph;
pub(crate) mod lineage;
pub(crate) mod merge;
pub(crate) mod namespaces;
pub(crate) mod oidc;
mod placement;
pub(crate) mod refs;
pub(crate) mod reviews;
pub(crate) mod tables;
pub(crate) mod tokens;
pub(crate) mod usage;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use basin_catalog::{Catalog, MAIN, Resolved, SqlStore, Store};
use basin_core::{Error, ErrorKind, Result};
use basin_table::{Tables, Warehouse};

use crate::config::BASIN_DIR;
use crate::config::{self, CatalogConfig, LakehouseConfig, Settings, WarehouseConfig};
pub use placement::Placement;
use placement::{WAREHOUSE_SETTING, check_catalog_url, other_warehouse};

const CONFIG_FILE: &str = "config.toml";
const CATALOG_FILE: &str = "catalog.db";
const HEAD_FILE: &str = "HEAD";

/// The catalog setting holding the token of the cluster's SQL scheduler: every node that
/// can read the catalog knows it, and nothing else does.
const CLUSTER_TOKEN_SETTING: &str = "sql_cluster_token";

/// The token the nodes of this lakehouse present to its SQL scheduler (made by the first
/// node that needs it).
pub async fn cluster_token(store: &dyn Store) -> Result<String> {
    let fresh = format!("{}{}", basin_core::ids::random(), basin_core::ids::random());
    store.fix_setting(CLUSTER_TOKEN_SETTING, &fresh).await
}

/// An open lakehouse: its folder, catalog and warehouse.
#[derive(Clone, Debug)]
pub struct Lakehouse {
    root: PathBuf,
    /// Shared, not copied: a lakehouse is cloned for every request `basin serve` handles
    /// (axum's state), and the settings hold every `[sources]`, `[buckets]` and `[[grants]]`.
    settings: Arc<Settings>,
    /// The shared catalog's URL, or `None` for `.basin/catalog.db`.
    catalog_url: Option<String>,
    tables: Tables,
    /// The function runtime, started at the first invocation.
    runtime: Arc<OnceLock<basin_runtime::Runtime>>,
    /// The memory pool, spill space and limits every SQL session shares.
    sql: basin_sql::Engine,
    /// `[auth.oidc]`'s verifier, with the issuer's keys cached.
    oidc: Option<Arc<oidc::Oidc>>,
}

impl Lakehouse {
    /// Creates `dir/.basin` with an empty catalog whose `main` branch has no tables: see
    /// [`Placement`] for where data and catalog go.
    pub async fn init(dir: &Path, placement: &Placement) -> Result<Self> {
        let warehouse = placement.warehouse.as_deref();
        let dir = std::path::absolute(dir)
            .map_err(|e| Error::io(format!("cannot resolve {}", dir.display())).with_source(e))?;
        let basin = dir.join(BASIN_DIR);
        if basin.join(CONFIG_FILE).exists() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} is already a lakehouse", dir.display()),
            )
            .with_hint("use it as it is, or pick another folder"));
        }
        let settings = Settings::load(&dir)?;
        let location = warehouse.map(placement::warehouse_location).transpose()?;
        let catalog = placement
            .catalog
            .as_deref()
            .map(|url| check_catalog_url(url).map(|url| CatalogConfig { url }))
            .transpose()?;
        // A shared catalog is opened once here: it names the warehouse, and the lakehouse
        // keeps using it.
        let (store, location) = match &catalog {
            Some(catalog) => {
                let store = basin_catalog::open_store(&catalog.url).await?;
                store.initialize().await?;
                let location =
                    placement::shared_warehouse(store.as_ref(), &catalog.url, location).await?;
                if !location.starts_with("s3://") {
                    placement::mark_shared_folder(store.as_ref(), &location).await?;
                }
                (Some(store), location)
            }
            None => (
                None,
                location.unwrap_or_else(|| basin.join("warehouse").to_string_lossy().into()),
            ),
        };
        std::fs::create_dir_all(&basin)
            .map_err(|e| Error::io(format!("cannot create {}", basin.display())).with_source(e))?;
        let config = LakehouseConfig {
            warehouse: WarehouseConfig { location },
            catalog,
        };
        let lakehouse = Self::assemble(&dir, &config, settings, store).await?;
        if lakehouse.warehouse().is_s3() {
            // Fail now, not at the first import, if the bucket cannot be written.
            let probe = format!("{}/.basin-init-check", lakehouse.warehouse().location());
            let io = lakehouse.warehouse().file_io();
            let result = async {
                io.new_output(&probe)?
                    .write(bytes::Bytes::from_static(b"ok"))
                    .await?;
                io.delete(&probe).await
            }
            .await;
            if let Err(e) = result {
                let _ = std::fs::remove_dir_all(&basin);
                return Err(Error::io(format!("cannot write to {}: {}", lakehouse.warehouse().location(), e.message()))
                    .with_hint("check the bucket exists and BASIN_S3_ENDPOINT / [s3] in basin.toml (endpoint, keys, path_style)"));
            }
        }
        if lakehouse.is_shared() {
            // The first node to get here fixes the warehouse for every node after it.
            let store = lakehouse.catalog().store();
            let fixed = store
                .fix_setting(WAREHOUSE_SETTING, lakehouse.warehouse().location())
                .await?;
            if fixed != lakehouse.warehouse().location() {
                let _ = std::fs::remove_dir_all(&basin);
                return Err(other_warehouse(&fixed, lakehouse.warehouse().location()));
            }
        }
        let text = toml::to_string_pretty(&config)
            .map_err(|e| Error::internal(format!("cannot write config: {e}")))?;
        std::fs::write(basin.join(CONFIG_FILE), text).map_err(|e| {
            Error::io(format!(
                "cannot write {}",
                basin.join(CONFIG_FILE).display()
            ))
            .with_source(e)
        })?;
        Ok(lakehouse)
    }

    /// Opens the lakehouse at `home`, or the one holding `cwd` (walking up like git).
    pub async fn open(home: Option<&Path>, cwd: &Path) -> Result<Self> {
        let root = match home {
            Some(home) => {
                if !home.join(BASIN_DIR).join(CONFIG_FILE).is_file() {
                    return Err(
                        Error::not_found(format!("{} is not a lakehouse", home.display()))
                            .with_hint(format!("create one with `basin init {}`", home.display())),
                    );
                }
                // Absolute, so every path made from it is (the bucket watcher's, a
                // configured folder's), whatever the working directory later.
                std::path::absolute(home).map_err(|e| {
                    Error::io(format!("cannot resolve {}", home.display())).with_source(e)
                })?
            }
            None => config::discover(cwd).ok_or_else(|| {
                Error::not_found(format!(
                    "no lakehouse in {} or any parent folder",
                    cwd.display()
                ))
                .with_hint(
                    "create one with `basin init`, or point at one with --home PATH / BASIN_HOME",
                )
            })?,
        };
        let path = root.join(BASIN_DIR).join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display())).with_source(e))?;
        let config: LakehouseConfig = toml::from_str(&text)
            .map_err(|e| config::toml_error(&path, &text, &e, "was it edited by hand?"))?;
        let settings = Settings::load(&root)?;
        Self::assemble(&root, &config, settings, None).await
    }

    /// The lakehouse `config` describes; `store` is its catalog if already open.
    async fn assemble(
        root: &Path,
        config: &LakehouseConfig,
        settings: Settings,
        store: Option<Arc<dyn Store>>,
    ) -> Result<Self> {
        // A store passed in is initialized already (`init` read the warehouse from it).
        let store: Arc<dyn Store> = match (store, &config.catalog) {
            (Some(store), _) => store,
            (None, catalog) => {
                let store: Arc<dyn Store> = match catalog {
                    Some(catalog) => basin_catalog::open_store(&catalog.url).await?,
                    None => {
                        Arc::new(SqlStore::open(&root.join(BASIN_DIR).join(CATALOG_FILE)).await?)
                    }
                };
                store.initialize().await?;
                store
            }
        };
        let location = &config.warehouse.location;
        let warehouse = if location.starts_with("s3://") {
            Warehouse::s3(location, &settings.s3)?
        } else {
            if config.catalog.is_some() {
                placement::check_shared_folder(store.as_ref(), location).await?;
            }
            let warehouse = Warehouse::local(Path::new(location))?;
            warehouse.create_folder(root).await?;
            warehouse
        }
        .with_external_locations(&settings.external_locations)?;
        let files = if warehouse.is_s3() {
            let (bucket, prefix, operator) = warehouse.s3_operator()?;
            basin_sql::WarehouseFiles::S3 {
                bucket,
                prefix,
                operator,
            }
        } else {
            basin_sql::WarehouseFiles::Local(PathBuf::from(warehouse.location()))
        };
        let sql = basin_sql::Engine::new(settings.sql.clone(), files)?;
        if let Some(scheduler) = &settings.sql.ballista.scheduler {
            sql.join_cluster(scheduler, &cluster_token(store.as_ref()).await?)?;
        }
        let settings_oidc = settings.oidc.clone();
        let catalog = Catalog::new(store)
            .with_protection(settings.protection.clone())
            .with_default_author(&settings.author);
        let tables = Tables::new(catalog, warehouse)
            .with_table_cache(settings.sql.table_cache)
            .with_max_metadata_size(settings.sql.max_metadata_size);
        Ok(Self {
            root: root.to_path_buf(),
            settings: Arc::new(settings),
            catalog_url: config.catalog.as_ref().map(|c| c.url.clone()),
            tables,
            runtime: Arc::new(OnceLock::new()),
            sql,
            oidc: settings_oidc
                .map(|s| oidc::Oidc::new(s).map(Arc::new))
                .transpose()?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the catalog is: its Postgres URL, or the SQLite file's path.
    pub fn catalog_location(&self) -> String {
        match &self.catalog_url {
            Some(url) => url.clone(),
            None => self
                .root
                .join(BASIN_DIR)
                .join(CATALOG_FILE)
                .display()
                .to_string(),
        }
    }

    /// Whether the catalog is shared with other nodes (Postgres) rather than this folder's.
    pub fn is_shared(&self) -> bool {
        self.catalog_url.is_some()
    }

    /// Refuses to treat this lakehouse as the one whose catalog is at `url` if it is not.
    pub fn check_catalog(&self, url: &str) -> Result<()> {
        let wanted = check_catalog_url(url)?;
        if self.catalog_url.as_deref() == Some(wanted.as_str()) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "{} is a lakehouse whose catalog is {}, not {wanted}",
            self.root.display(),
            self.catalog_location()
        ))
        .with_hint(
            "give --home a new folder to join with, or leave out --join to work for this one",
        ))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn catalog(&self) -> &Catalog {
        self.tables.catalog()
    }

    /// basin-table's view of the warehouse: loading, staging and committing Iceberg tables.
    /// (The table operations of `basin table` are on [`Self::tables`].)
    pub fn iceberg_tables(&self) -> &Tables {
        &self.tables
    }

    /// The token this lakehouse's nodes present to its SQL scheduler.
    pub async fn cluster_token(&self) -> Result<String> {
        cluster_token(self.catalog().store().as_ref()).await
    }

    /// What SQL sessions share: memory, spill space, limits.
    pub fn sql(&self) -> &basin_sql::Engine {
        &self.sql
    }

    pub fn warehouse(&self) -> &Warehouse {
        self.tables.warehouse()
    }

    /// The cache of function environments, shared by every lakehouse of this user
    /// (`~/.cache/basin/envs`, see `config::env::user_cache_dir`), with `uv` in `tools` beside
    /// it if it is not on PATH. An environment is keyed by its spec and the SDK it holds, so
    /// sharing it is safe; without a home folder, the lakehouse's `.basin/` holds them.
    pub fn envs(&self) -> basin_runtime::EnvCache {
        let cache = self.cache_dir();
        basin_runtime::EnvCache::new(cache.join("envs"), cache.join("tools"))
            .with_source_builds(self.settings.build_from_source)
    }

    fn cache_dir(&self) -> PathBuf {
        crate::config::env::user_cache_dir().unwrap_or_else(|| self.root.join(BASIN_DIR))
    }

    /// `.basin/serve.lock`: locked by a `basin serve` of this lakehouse while it runs, so
    /// other commands can tell whether one does (on this machine).
    pub fn serve_lock(&self) -> PathBuf {
        self.root.join(BASIN_DIR).join("serve.lock")
    }

    /// Whether a `basin serve` of this lakehouse runs on this machine now.
    pub fn is_served(&self) -> bool {
        match std::fs::File::open(self.serve_lock()) {
            // A shared lock is refused while a server holds the exclusive one.
            Ok(file) => matches!(
                file.try_lock_shared(),
                Err(std::fs::TryLockError::WouldBlock)
            ),
            Err(_) => false,
        }
    }

    /// The user cache's `tools`: `uv` when it is not on PATH, and the SDK for reading
    /// declarations.
    pub fn tools_dir(&self) -> PathBuf {
        self.cache_dir().join("tools")
    }

    /// The function runtime (warm workers live as long as it, up to the keep-alive).
    pub fn runtime(&self) -> Result<&basin_runtime::Runtime> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = basin_runtime::Runtime::new(self.envs(), self.settings.runtime.clone())?;
        Ok(self.runtime.get_or_init(|| rt))
    }

    /// The branch commands use when none is named (`basin checkout` sets it).
    pub fn current_branch(&self) -> String {
        std::fs::read_to_string(self.head_file())
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| MAIN.to_string())
    }

    /// `.basin/HEAD`: the current branch's name.
    fn head_file(&self) -> PathBuf {
        self.root.join(BASIN_DIR).join(HEAD_FILE)
    }

    /// Resolves `spec`, or the current branch when `None`.
    pub async fn resolve(&self, spec: Option<&str>) -> Result<Resolved> {
        match spec {
            Some(s) => self.catalog().resolve(s).await,
            None => self.catalog().resolve(&self.current_branch()).await,
        }
    }

    /// An S3 FileIO for reading `s3://` import sources, when configured.
    pub fn s3_file_io(&self) -> Option<iceberg::io::FileIO> {
        if self.warehouse().is_s3() {
            Some(self.warehouse().file_io().clone())
        } else if self.settings.has_s3() {
            Some(self.settings.s3.file_io())
        } else {
            None
        }
    }

    /// Runs a SQL script on `at` (default: the current branch).
    pub async fn query(
        &self,
        sql: &str,
        at: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<basin_sql::QueryResult> {
        self.query_keeping(sql, at, namespace, false).await
    }

    /// Runs SQL as [`Lakehouse::query`] does; with `keeping`, its scans read the columns
    /// kept on disk and keep those they decode (`[sql] column_cache_disk`): for `basin
    /// query`, which then waits for [`Lakehouse::settle_columns`] before it exits. Other
    /// callers (checks, replays, `diff`) leave them, as they do not wait.
    pub async fn query_keeping(
        &self,
        sql: &str,
        at: Option<&str>,
        namespace: Option<&str>,
        keeping: bool,
    ) -> Result<basin_sql::QueryResult> {
        let at = self.resolve(at).await?;
        let session = basin_sql::Session::new(&self.sql, &self.tables, &at, namespace)
            .await?
            .with_kept_columns(keeping && self.sql.keeps_columns_on_disk());
        session.run(sql).await
    }

    /// Waits for the columns this process's queries decoded to be kept on disk, for the next
    /// process's queries (`[sql] column_cache_disk`): a command calls it before it exits.
    pub async fn settle_columns(&self) {
        self.sql.settle_columns().await;
    }

    /// Imports files into a table (see [`basin_ingest::import`]).
    pub async fn import(
        &self,
        request: basin_ingest::ImportRequest,
        progress: Option<basin_ingest::Progress>,
    ) -> Result<basin_ingest::ImportReport> {
        let s3 = self.s3_file_io();
        basin_ingest::import(&self.tables, request, s3.as_ref(), progress).await
    }
}
