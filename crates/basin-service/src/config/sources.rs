//! `[sources.NAME]` sections: the databases Basin ingests from, as configured.

use std::collections::BTreeMap;
use std::path::Path;

use basin_catalog::Key;
use basin_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Readers per source unless it says otherwise.
pub const DEFAULT_READERS: usize = 2;

/// The publication a change-data-capture source streams unless it names another.
pub const DEFAULT_PUBLICATION: &str = "basin";

/// A CDC batch is committed once it holds this many changes (whole transactions)...
pub const DEFAULT_BATCH_ROWS: usize = 10_000;

/// ...or once its first transaction has waited this long.
pub const DEFAULT_BATCH_SECONDS: f64 = 1.0;

/// The most changes one source transaction may hold: Basin keeps a transaction in memory until
/// it commits at the source, so a bigger one stops the stream with a hint instead of using up
/// memory.
pub const DEFAULT_MAX_TRANSACTION_CHANGES: usize = 1_000_000;

/// `[sources.NAME]` as written in basin.toml.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    pub url: Option<String>,
    pub password_env: Option<String>,
    pub tables: Option<Vec<String>>,
    pub schema: Option<String>,
    pub namespace: Option<String>,
    pub mode: Option<String>,
    pub branch: Option<String>,
    pub readers: Option<usize>,
    pub publication: Option<String>,
    pub batch_rows: Option<usize>,
    pub batch_seconds: Option<f64>,
    pub max_transaction_changes: Option<usize>,
}

/// How a source is kept up to date.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceMode {
    /// A full load each time `basin ingest` runs.
    #[default]
    Snapshot,
    /// A full load from a replication slot's snapshot, then the changes streamed from it.
    Cdc,
}

/// A source, checked: what `basin source ls` shows and `basin ingest` reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceConfig {
    pub name: String,
    /// `postgres://USER@HOST:PORT/DATABASE`, never with a password.
    pub url: String,
    /// The environment variable holding the password, if the server asks for one.
    pub password_env: Option<String>,
    /// `schema.table` names; empty when `schema` is given.
    pub tables: Vec<String>,
    pub schema: Option<String>,
    pub namespace: String,
    pub mode: SourceMode,
    pub branch: Option<String>,
    pub readers: usize,
    /// CDC: the publication to stream (created by the user at the source).
    pub publication: String,
    /// CDC: commit a batch at this many changes...
    pub batch_rows: usize,
    /// ...or when its first transaction has waited this long.
    pub batch_seconds: f64,
    /// CDC: the most changes one source transaction may hold (it is held in memory).
    pub max_transaction_changes: usize,
}

impl SourceConfig {
    /// Checks a `[sources.NAME]` section; errors name the section and say how to fix it.
    pub fn from_section(name: &str, section: &SourceSection, file: &Path) -> Result<Self> {
        let refuse = |message: String, hint: &str| {
            Error::invalid(format!("{}: [sources.{name}]: {message}", file.display()))
                .with_hint(hint.to_string())
        };
        Key::parse(name).map_err(|_| {
            refuse(
                format!("`{name}` is not a source name"),
                "use letters, digits and `_`",
            )
        })?;
        let url = checked_url(section, &refuse)?;
        let tables = checked_tables(section, &refuse)?;
        let namespace = section
            .namespace
            .clone()
            .unwrap_or_else(|| name.to_string());
        Key::parse(&namespace).map_err(|e| refuse(e.message, "namespace = \"shop\""))?;
        let mode = checked_mode(section, &refuse)?;
        let readers = section.readers.unwrap_or(DEFAULT_READERS);
        if !(1..=64).contains(&readers) {
            return Err(refuse(
                format!("readers = {readers}: give 1 to 64"),
                "readers = 2 (connections reading in parallel)",
            ));
        }
        let batching = checked_batching(section, &refuse)?;
        let publication = checked_publication(section, &refuse)?;
        Ok(Self {
            name: name.to_string(),
            url,
            password_env: section.password_env.clone(),
            tables,
            schema: section.schema.clone(),
            namespace,
            mode,
            branch: section.branch.clone(),
            readers,
            publication,
            batch_rows: batching.batch_rows,
            batch_seconds: batching.batch_seconds,
            max_transaction_changes: batching.max_transaction_changes,
        })
    }

    /// The basin.toml section that declares this source.
    pub(crate) fn to_toml(&self) -> toml_edit::Table {
        let mut table = toml_edit::Table::new();
        table["url"] = toml_edit::value(&self.url);
        if let Some(var) = &self.password_env {
            table["password_env"] = toml_edit::value(var);
        }
        if let Some(schema) = &self.schema {
            table["schema"] = toml_edit::value(schema);
        } else {
            let mut list = toml_edit::Array::new();
            list.extend(self.tables.iter().map(String::as_str));
            table["tables"] = toml_edit::value(list);
        }
        table["namespace"] = toml_edit::value(&self.namespace);
        if self.mode != SourceMode::Snapshot {
            table["mode"] = toml_edit::value("cdc");
        }
        if let Some(branch) = &self.branch {
            table["branch"] = toml_edit::value(branch);
        }
        if self.readers != DEFAULT_READERS {
            table["readers"] = toml_edit::value(self.readers as i64);
        }
        if self.publication != DEFAULT_PUBLICATION {
            table["publication"] = toml_edit::value(&self.publication);
        }
        if self.batch_rows != DEFAULT_BATCH_ROWS {
            table["batch_rows"] = toml_edit::value(self.batch_rows as i64);
        }
        if self.batch_seconds != DEFAULT_BATCH_SECONDS {
            table["batch_seconds"] = toml_edit::value(self.batch_seconds);
        }
        if self.max_transaction_changes != DEFAULT_MAX_TRANSACTION_CHANGES {
            table["max_transaction_changes"] =
                toml_edit::value(self.max_transaction_changes as i64);
        }
        table
    }
}

/// Whether `url` names a MySQL or MariaDB server (else Postgres).
pub fn is_mysql(url: &str) -> bool {
    url.starts_with("mysql://") || url.starts_with("mariadb://")
}

/// Builds a `[sources.NAME]` error from its message and a hint.
type Refuse<'a> = &'a dyn Fn(String, &str) -> Error;

/// `url`: a postgres://, mysql:// or mariadb:// url without a password.
fn checked_url(section: &SourceSection, refuse: Refuse) -> Result<String> {
    let Some(url) = section.url.clone() else {
        return Err(refuse(
            "no `url`".into(),
            "url = \"postgres://USER@HOST:5432/DATABASE\"",
        ));
    };
    let parsed = url::Url::parse(&url).map_err(|e| {
        refuse(
            format!("cannot read url `{url}`: {e}"),
            "url = \"postgres://USER@HOST:5432/DATABASE\"",
        )
    })?;
    if !matches!(
        parsed.scheme(),
        "postgres" | "postgresql" | "mysql" | "mariadb"
    ) {
        return Err(refuse(
            format!("`{url}` is not a postgres://, mysql:// or mariadb:// url"),
            "Basin ingests from Postgres, MySQL and MariaDB",
        ));
    }
    if parsed.password().is_some() {
        // Not even echoed back: the message names the setting, not the url.
        return Err(refuse(
            "the url holds a password, which basin.toml must not".into(),
            "take it out of the url, put it in an environment variable and set password_env = \"VAR\"",
        ));
    }
    Ok(url)
}

/// `tables` or `schema`, exactly one of them.
fn checked_tables(section: &SourceSection, refuse: Refuse) -> Result<Vec<String>> {
    let tables = section.tables.clone().unwrap_or_default();
    match (&section.schema, tables.is_empty()) {
        (Some(_), false) => Err(refuse(
            "give `tables` or `schema`, not both".into(),
            "tables = [\"public.orders\"] loads those; schema = \"public\" loads all of that schema's tables",
        )),
        (None, true) => Err(refuse(
            "no `tables` and no `schema`".into(),
            "tables = [\"public.orders\"] loads those; schema = \"public\" loads all of that schema's tables",
        )),
        _ => Ok(tables),
    }
}

/// `mode`: `snapshot` (the default) or `cdc`.
fn checked_mode(section: &SourceSection, refuse: Refuse) -> Result<SourceMode> {
    match section.mode.as_deref() {
        None | Some("snapshot") => Ok(SourceMode::Snapshot),
        Some("cdc") => Ok(SourceMode::Cdc),
        Some(other) => Err(refuse(
            format!("mode `{other}` is not `snapshot` or `cdc`"),
            "mode = \"snapshot\" (a full load each `basin ingest`) or mode = \"cdc\" (a full load, then changes streamed)",
        )),
    }
}

/// How a CDC stream groups changes into commits, checked.
struct Batching {
    batch_rows: usize,
    batch_seconds: f64,
    max_transaction_changes: usize,
}

/// `batch_rows`, `batch_seconds` and `max_transaction_changes`, each defaulted.
fn checked_batching(section: &SourceSection, refuse: Refuse) -> Result<Batching> {
    let batch_rows = section.batch_rows.unwrap_or(DEFAULT_BATCH_ROWS);
    if batch_rows == 0 {
        return Err(refuse(
            "batch_rows = 0: give at least 1".into(),
            "batch_rows = 10000 (changes per commit, whole transactions)",
        ));
    }
    let batch_seconds = section.batch_seconds.unwrap_or(DEFAULT_BATCH_SECONDS);
    if !(0.0..=3600.0).contains(&batch_seconds) {
        return Err(refuse(
            format!("batch_seconds = {batch_seconds}: give 0 to 3600"),
            "batch_seconds = 1.0 (the longest a change waits for its batch)",
        ));
    }
    let max_transaction_changes = section
        .max_transaction_changes
        .unwrap_or(DEFAULT_MAX_TRANSACTION_CHANGES);
    if max_transaction_changes == 0 {
        return Err(refuse(
            "max_transaction_changes = 0: give at least 1".into(),
            "max_transaction_changes = 1000000 (changes of one source transaction, held in memory)",
        ));
    }
    Ok(Batching {
        batch_rows,
        batch_seconds,
        max_transaction_changes,
    })
}

/// `publication`: a name Basin can put in a replication command.
fn checked_publication(section: &SourceSection, refuse: Refuse) -> Result<String> {
    let publication = section
        .publication
        .clone()
        .unwrap_or_else(|| DEFAULT_PUBLICATION.to_string());
    if publication.is_empty() || publication.contains([',', '\'', ' ']) {
        return Err(refuse(
            format!("publication `{publication}` is not a name Basin can stream"),
            "publication = \"basin\" (letters, digits and `_`)",
        ));
    }
    Ok(publication)
}

/// Checks every `[sources.NAME]`.
pub(crate) fn resolve(
    sections: &BTreeMap<String, SourceSection>,
    file: &Path,
) -> Result<BTreeMap<String, SourceConfig>> {
    sections
        .iter()
        .map(|(name, section)| {
            Ok((
                name.clone(),
                SourceConfig::from_section(name, section, file)?,
            ))
        })
        .collect()
}

pub(crate) fn unknown_source(name: &str, known: &BTreeMap<String, SourceConfig>) -> Error {
    let hint = match basin_core::suggest(name, known.keys().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`? (`basin source ls` lists them)"),
        None if known.is_empty() => format!(
            "declare it: basin source add {name} --url postgres://USER@HOST:5432/DB --tables public.TABLE"
        ),
        None => format!(
            "the sources are {} (`basin source ls`)",
            known.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    Error::not_found(format!("no source `{name}` in basin.toml")).with_hint(hint)
}
