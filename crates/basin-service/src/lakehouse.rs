//! Opening and creating a lakehouse folder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use basin_catalog::{Catalog, Error, ErrorKind, MAIN, Resolved, Result, SqlStore, Store};
use basin_table::{Tables, Warehouse};

use crate::config::{self, LakehouseConfig, Settings, WarehouseConfig};

/// The folder that marks a lakehouse, like `.git`.
pub const BASIN_DIR: &str = ".basin";
const CONFIG_FILE: &str = "config.toml";
const CATALOG_FILE: &str = "catalog.db";
const HEAD_FILE: &str = "HEAD";

/// An open lakehouse: its folder, catalog and warehouse.
#[derive(Clone, Debug)]
pub struct Lakehouse {
    root: PathBuf,
    settings: Settings,
    tables: Tables,
    /// The function runtime, started at the first invocation.
    runtime: Arc<OnceLock<basin_runtime::Runtime>>,
    /// The memory pool, spill space and limits every SQL session shares.
    sql: basin_sql::Engine,
}

impl Lakehouse {
    /// Creates `dir/.basin` with an empty catalog whose `main` branch has no tables.
    /// `warehouse` is an `s3://` URL for data in an S3-compatible store; the default is
    /// `dir/.basin/warehouse`.
    pub async fn init(dir: &Path, warehouse: Option<&str>) -> Result<Self> {
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
        let location = match warehouse {
            Some(url) if url.starts_with("s3://") => url.trim_end_matches('/').to_string(),
            Some(other) => {
                return Err(
                    Error::invalid(format!("`{other}` is not an s3:// URL")).with_hint(
                        "leave out --warehouse for a local lakehouse, or give s3://BUCKET/PREFIX",
                    ),
                );
            }
            None => basin.join("warehouse").to_string_lossy().into_owned(),
        };
        std::fs::create_dir_all(&basin)
            .map_err(|e| Error::io(format!("cannot create {}", basin.display())).with_source(e))?;
        let config = LakehouseConfig {
            warehouse: WarehouseConfig { location },
        };
        let lakehouse = Self::assemble(&dir, &config, settings).await?;
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
        Self::assemble(&root, &config, settings).await
    }

    async fn assemble(root: &Path, config: &LakehouseConfig, settings: Settings) -> Result<Self> {
        let store = SqlStore::open(&root.join(BASIN_DIR).join(CATALOG_FILE)).await?;
        store.initialize().await?;
        let location = &config.warehouse.location;
        let warehouse = if location.starts_with("s3://") {
            Warehouse::s3(location, &settings.s3)?
        } else {
            Warehouse::local(Path::new(location))?
        };
        let store: Arc<dyn Store> = Arc::new(store);
        let local = (!warehouse.is_s3()).then(|| PathBuf::from(warehouse.location()));
        let sql = basin_sql::Engine::new(settings.sql.clone(), local.as_deref())?;
        Ok(Self {
            root: root.to_path_buf(),
            settings,
            tables: Tables::new(Catalog::new(store), warehouse),
            runtime: Arc::new(OnceLock::new()),
            sql,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn catalog(&self) -> &Catalog {
        self.tables.catalog()
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
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
        std::fs::read_to_string(self.root.join(BASIN_DIR).join(HEAD_FILE))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| MAIN.to_string())
    }

    /// Makes `branch` the current branch.
    pub async fn checkout(&self, branch: &str) -> Result<Resolved> {
        let resolved = self.catalog().resolve(branch).await?;
        resolved.writable_branch()?;
        let path = self.root.join(BASIN_DIR).join(HEAD_FILE);
        // Write-then-rename so a crash never leaves a half-written HEAD.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{branch}\n"))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("cannot write {}", path.display())).with_source(e))?;
        Ok(resolved)
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
        let at = self.resolve(at).await?;
        let session = basin_sql::Session::new(&self.sql, &self.tables, &at, namespace).await?;
        session.run(sql).await
    }

    /// Imports files into a table (see [`basin_ingest::import`]).
    pub async fn import(
        &self,
        mut request: basin_ingest::ImportRequest,
        progress: Option<basin_ingest::Progress>,
    ) -> Result<basin_ingest::ImportReport> {
        request.author = self.settings.author.clone();
        let s3 = self.s3_file_io();
        basin_ingest::import(&self.tables, request, s3.as_ref(), progress).await
    }
}
