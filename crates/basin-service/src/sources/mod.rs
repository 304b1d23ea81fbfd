//! Database sources: `[sources.NAME]` in basin.toml, `basin source add|ls|rm`, and
//! `basin ingest NAME` (a full load of the source's tables; see `basin_ingest::postgres`).

pub mod cdc;
mod handle;

use crate::config::SourceConfig;
use crate::config::SourceMode;
use crate::config::sources::{is_mysql, unknown_source};
use std::path::Path;

use basin_core::{Error, ErrorKind, Result};
use basin_ingest::mysql::MySource;
use basin_ingest::postgres::{LoadProgress, LoadReport, LoadRequest, PgSource};

use crate::config::env;
pub use handle::Sources;

impl Sources<'_> {
    /// The declared sources, by name.
    pub fn list(&self) -> Vec<SourceConfig> {
        self.lake.settings().sources.values().cloned().collect()
    }

    fn config_file(&self) -> std::path::PathBuf {
        self.lake.root().join("basin.toml")
    }

    /// Reads basin.toml for editing, keeping its comments and layout.
    fn edit_config(&self) -> Result<toml_edit::DocumentMut> {
        let path = self.config_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::io(format!("cannot read {}", path.display())).with_source(e));
            }
        };
        text.parse::<toml_edit::DocumentMut>().map_err(|e| {
            Error::invalid(format!("{}: {e}", path.display()))
                .with_hint("fix basin.toml by hand first")
        })
    }

    /// Writes basin.toml after checking it still loads (write, then rename).
    fn save_config(&self, doc: &toml_edit::DocumentMut) -> Result<()> {
        let path = self.config_file();
        let text = doc.to_string();
        let tmp = path.with_extension("toml.tmp");
        let io = |e| Error::io(format!("cannot write {}", path.display())).with_source(e);
        std::fs::write(&tmp, &text).map_err(io)?;
        let dir = tmp.parent().unwrap_or(Path::new("."));
        let check = crate::config::Settings::load_file(dir, &tmp);
        if let Err(e) = check {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Adds `[sources.NAME]` to basin.toml.
    pub fn add(&self, source: &SourceConfig) -> Result<()> {
        let mut doc = self.edit_config()?;
        let sources = doc
            .entry("sources")
            .or_insert_with(|| {
                let mut t = toml_edit::Table::new();
                t.set_implicit(true);
                toml_edit::Item::Table(t)
            })
            .as_table_mut()
            .ok_or_else(|| {
                Error::invalid("basin.toml: `sources` is not a table")
                    .with_hint("write each source as a [sources.NAME] section")
            })?;
        if sources.contains_key(&source.name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("basin.toml already declares source `{}`", source.name),
            )
            .with_hint(format!(
                "remove it first (`basin source rm {}`), or edit basin.toml",
                source.name
            )));
        }
        sources.insert(&source.name, toml_edit::Item::Table(source.to_toml()));
        self.save_config(&doc)
    }

    /// Removes `[sources.NAME]` from basin.toml, first dropping the replication slot Basin
    /// created for it (unless `keep_slot`); says whether it dropped one.
    pub async fn remove(&self, name: &str, keep_slot: bool) -> Result<(SourceConfig, bool)> {
        let known = &self.lake.settings().sources;
        let Some(source) = known.get(name) else {
            return Err(unknown_source(name, known));
        };
        let mut dropped = false;
        if !keep_slot && !is_mysql(&source.url) {
            let slot = basin_ingest::postgres::cdc::slot::slot_name(name);
            let result = match self.pg_source(source, None) {
                Ok(pg) => basin_ingest::postgres::cdc::slot::drop_source_slot(&pg).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(d) => dropped = d,
                // A snapshot source only has a slot if `--follow` made one: an unreachable
                // server does not keep it in basin.toml.
                Err(e) if source.mode == SourceMode::Snapshot => {
                    tracing::warn!(source = name, error = %e, "could not check for a replication slot to drop");
                }
                Err(e) => {
                    return Err(e.with_hint(format!(
                        "pass --keep-slot to remove the source and leave its slot `{slot}` on the server (drop it later with `SELECT pg_drop_replication_slot('{slot}')`)"
                    )));
                }
            }
        }
        let mut doc = self.edit_config()?;
        if let Some(sources) = doc.get_mut("sources").and_then(|s| s.as_table_like_mut()) {
            sources.remove(name);
        }
        self.save_config(&doc)?;
        Ok((source.clone(), dropped))
    }

    /// The source `name`, or an error that suggests one.
    pub fn get(&self, name: &str) -> Result<SourceConfig> {
        let known = &self.lake.settings().sources;
        known
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_source(name, known))
    }

    /// The source as the Postgres reader takes it, its password read from its variable.
    pub fn pg_source(&self, source: &SourceConfig, readers: Option<usize>) -> Result<PgSource> {
        if is_mysql(&source.url) {
            return Err(Error::internal(format!(
                "source `{}` is a MySQL source, not a Postgres one",
                source.name
            )));
        }
        Ok(PgSource {
            name: source.name.to_string(),
            url: source.url.clone(),
            password: password(source)?,
            password_env: source.password_env.clone(),
            tables: source.tables.clone(),
            schema: source.schema.clone(),
            namespace: source.namespace.clone(),
            readers: readers.unwrap_or(source.readers).max(1),
        })
    }

    /// A MySQL or MariaDB source as its reader takes it.
    pub(crate) fn my_source(
        &self,
        source: &SourceConfig,
        readers: Option<usize>,
    ) -> Result<MySource> {
        Ok(MySource {
            name: source.name.to_string(),
            url: source.url.clone(),
            password: password(source)?,
            tables: source.tables.clone(),
            schema: source.schema.clone(),
            namespace: source.namespace.clone(),
            readers: readers.unwrap_or(source.readers).max(1),
        })
    }

    /// A full load of source `name` into its namespace on `branch` (default: the source's
    /// branch, else `main`), replacing the tables' rows in one commit.
    pub async fn ingest(
        &self,
        name: &str,
        branch: Option<&str>,
        skip_unsupported: bool,
        readers: Option<usize>,
        progress: Option<LoadProgress>,
    ) -> Result<LoadReport> {
        let source = self.get(name)?;
        if is_mysql(&source.url) {
            let my = self.my_source(&source, readers)?;
            let branch = source_branch(&source, branch);
            let tables = self.lake.iceberg_tables();
            return basin_ingest::mysql::load_mysql(
                tables,
                my,
                &branch,
                skip_unsupported,
                progress,
            )
            .await;
        }
        let request = LoadRequest {
            source: self.pg_source(&source, readers)?,
            branch: source_branch(&source, branch),
            skip_unsupported,
            slot: None,
        };
        basin_ingest::postgres::load(self.lake.iceberg_tables(), request, progress).await
    }
}

/// The source's password, read from its `password_env`.
fn password(source: &SourceConfig) -> Result<Option<String>> {
    let name = &source.name;
    Ok(match &source.password_env {
        Some(var) => Some(env::secret(var).ok_or_else(|| {
            Error::invalid(format!(
                "source `{name}`: ${var} is not set (the source's password_env)"
            ))
            .with_hint(format!(
                "export {var}=... with the password of the url's user"
            ))
        })?),
        None => None,
    })
}

/// The branch a source's tables are written on: `branch`, else the source's, else main.
pub fn source_branch(source: &SourceConfig, branch: Option<&str>) -> String {
    branch
        .map(str::to_string)
        .or_else(|| source.branch.clone())
        .unwrap_or_else(|| basin_catalog::MAIN.to_string())
}
