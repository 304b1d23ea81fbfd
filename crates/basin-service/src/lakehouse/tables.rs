//! Table-level operations: list, show, drop, revert, rename, register, and Iceberg's own
//! requirements-and-updates commits (what the REST catalog receives).

use basin_catalog::{Commit, CommitRequest, Content, Key, Operation};
use basin_core::{Error, ErrorKind, Result};
use basin_table::iceberg::TableUpdate;
use basin_table::iceberg::table::Table;
use basin_table::{ColumnSummary, TableSummary, TableUpdates};
use serde::{Deserialize, Serialize};

use crate::Lakehouse;
use crate::lakehouse::namespaces::namespace_at;

/// A row of `basin table ls`; with the table's columns when asked for (the console's list).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableEntry {
    pub table: String,
    pub metadata_location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<ColumnSummary>>,
}

/// Table operations on a branch: list, show, drop, revert, rename, register, and Iceberg's
/// commits (`basin table`, the Iceberg REST catalog). They stand on
/// [`Lakehouse::iceberg_tables`], basin-table's loading and committing.
///
/// A handle borrowing the lakehouse: [`Lakehouse::tables`].
#[derive(Clone, Copy)]
pub struct Tables<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Table operations on a branch: see [`Tables`].
    pub fn tables(&self) -> Tables<'_> {
        Tables { lake: self }
    }
}

impl<'a> Tables<'a> {
    pub(crate) fn lake(&self) -> &'a Lakehouse {
        self.lake
    }

    /// The table whose files `location` is among, for a door that hands out access to files
    /// (the S3 signer, an Iceberg REST location): the one Basin made its folder for
    /// ([`basin_table::table_of`]), if a ref the acting principal may see still holds that
    /// table, readable to it, in that folder (`main` first). `None` otherwise: a folder of no
    /// table, or of a table since renamed (its folder keeps the old name), or one the
    /// principal may not read anywhere.
    pub async fn folder_owner(&self, location: &str) -> Result<Option<String>> {
        let Some((name, folder)) =
            basin_table::table_of(self.lake.warehouse().location(), location)
        else {
            return Ok(None);
        };
        let key = Key::parse(&name)?;
        let catalog = self.lake.catalog();
        let mut refs = catalog.list_refs().await?;
        refs.sort_by_key(|r| r.name != basin_catalog::MAIN);
        for r in refs {
            // The listing has each ref's head already: no lookup per ref.
            let branch = (r.kind == basin_catalog::RefKind::Branch).then(|| r.name.clone());
            let at = basin_catalog::Resolved {
                spec: r.name,
                branch,
                commit: r.head,
            };
            if let Some(Content::Table { metadata_location }) = catalog.content(&at, &key).await?
                && metadata_location.starts_with(&folder)
            {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    pub async fn list(&self, at: Option<&str>) -> Result<Vec<TableEntry>> {
        let at = self.lake.resolve(at).await?;
        Ok(self
            .lake
            .catalog()
            .contents(&at)
            .await?
            .into_iter()
            .filter_map(|(k, c)| match c {
                Content::Table { metadata_location } => Some(TableEntry {
                    table: k.to_string(),
                    metadata_location,
                    columns: None,
                }),
                Content::Namespace { .. } => None,
            })
            .collect())
    }

    /// [`Self::list`] with each table's columns (read from its metadata file).
    pub async fn list_with_columns(&self, at: Option<&str>) -> Result<Vec<TableEntry>> {
        use futures::{StreamExt, TryStreamExt};
        let tables = self.list(at).await?;
        futures::stream::iter(tables)
            .map(|mut entry| async move {
                let key = Key::table(&entry.table)?;
                let table = self
                    .lake
                    .iceberg_tables()
                    .load_from(&key, &entry.metadata_location)
                    .await?;
                entry.columns = Some(basin_table::Tables::columns(&table));
                Ok(entry)
            })
            .buffered(16)
            .try_collect()
            .await
    }

    pub async fn show(&self, name: &str, at: Option<&str>) -> Result<TableSummary> {
        let key = Key::table(name)?;
        let at = self.lake.resolve(at).await?;
        let table = self.lake.iceberg_tables().load(&at, &key).await?;
        Ok(basin_table::Tables::summarize(&key, &table))
    }

    /// Removes the table from `branch`. Its files stay: other refs and history may use them.
    pub async fn drop(&self, name: &str, branch: Option<&str>) -> Result<Commit> {
        let key = Key::table(name)?;
        let at = self.lake.resolve(branch).await?;
        let branch = at.writable_branch()?;
        self.lake.catalog().table_location(&at, &key).await?;
        let request = CommitRequest::new(branch, at.commit.clone(), format!("drop table {key}"))
            .with_operations([Operation::Delete { key }]);
        self.lake.catalog().commit(request).await
    }

    /// Points the table on `branch` back at its state in `to`, in a new commit.
    pub async fn revert(&self, name: &str, to: &str, branch: Option<&str>) -> Result<Commit> {
        let key = Key::table(name)?;
        let at = self.lake.resolve(branch).await?;
        let branch = at.writable_branch()?;
        let past = self.lake.catalog().resolve(to).await?;
        let location = self
            .lake
            .catalog()
            .table_location(&past, &key)
            .await
            .map_err(|e| {
                e.with_hint(format!(
                    "`{key}` did not exist at `{to}`; to remove it, use `basin table rm {key}`"
                ))
            })?;
        if self.lake.catalog().content(&at, &key).await? == Some(Content::table(location.clone())) {
            return Err(Error::invalid(format!(
                "`{key}` on `{branch}` is already as it was at `{to}`"
            )));
        }
        let request = CommitRequest::new(
            branch,
            at.commit.clone(),
            format!("revert table {key} to {to}"),
        )
        .with_operations([Operation::Put {
            key,
            content: Content::table(location),
        }]);
        self.lake.catalog().commit(request).await
    }

    /// Applies Iceberg requirements and updates to one or more tables on `branch`, in one
    /// catalog commit (see [`basin_table::Tables::commit_updates`]). Returns the tables as committed.
    pub async fn commit_updates(
        &self,
        branch: Option<&str>,
        changes: &[TableUpdates],
    ) -> Result<Vec<Table>> {
        let at = self.lake.resolve(branch).await?;
        let branch = at.writable_branch()?;
        let message = changes.iter().map(describe).collect::<Vec<_>>().join("; ");
        let request = CommitRequest::new(branch, at.commit.clone(), message);
        self.lake
            .iceberg_tables()
            .commit_updates(changes, request)
            .await
    }

    /// Renames (or moves to another namespace) a table on `branch`, in one commit.
    pub async fn rename(&self, from: &str, to: &str, branch: Option<&str>) -> Result<Commit> {
        let (from, to) = (Key::table(from)?, Key::table(to)?);
        let at = self.lake.resolve(branch).await?;
        let branch = at.writable_branch()?;
        let location = self.lake.catalog().table_location(&at, &from).await?;
        if self.lake.catalog().content(&at, &to).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("`{to}` already exists on `{branch}`"),
            )
            .with_hint("pick another name, or drop that table first"));
        }
        if let Some(ns) = to.namespace() {
            namespace_at(self.lake, &at, &ns).await?;
        }
        let request = CommitRequest::new(
            branch,
            at.commit.clone(),
            format!("rename table {from} to {to}"),
        )
        .with_operations([
            Operation::Delete { key: from },
            Operation::Put {
                key: to,
                content: Content::table(location),
            },
        ]);
        self.lake.catalog().commit(request).await
    }

    /// Points `name` on `branch` at an existing Iceberg metadata file (written by another
    /// engine, or a table's past state). With `overwrite`, an existing table is replaced.
    pub async fn register(
        &self,
        name: &str,
        metadata_location: &str,
        branch: Option<&str>,
        overwrite: bool,
    ) -> Result<Table> {
        let key = Key::table(name)?;
        let at = self.lake.resolve(branch).await?;
        let branch = at.writable_branch()?;
        let table = self
            .lake
            .iceberg_tables()
            .load_from(&key, metadata_location)
            .await?;
        self.lake
            .iceberg_tables()
            .check_files_inside(&table)
            .await?;
        match self.lake.catalog().content(&at, &key).await? {
            Some(Content::Table { .. }) if !overwrite => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("table `{key}` already exists on `{branch}`"),
                )
                .with_hint("register it under another name, or ask to overwrite"));
            }
            Some(Content::Namespace { .. }) => {
                return Err(Error::invalid(format!("`{key}` is a namespace")));
            }
            _ => {}
        }
        if let Some(ns) = key.namespace() {
            namespace_at(self.lake, &at, &ns).await?;
        }
        let request = CommitRequest::new(
            branch,
            at.commit.clone(),
            format!("register table {key} at {metadata_location}"),
        )
        .with_operations([Operation::Put {
            key,
            content: Content::table(metadata_location),
        }]);
        self.lake.catalog().commit(request).await?;
        Ok(table)
    }
}

/// A commit message for one table's Iceberg updates: `append to sales.orders`.
fn describe(change: &TableUpdates) -> String {
    let key = &change.key;
    let snapshot = change.updates.iter().find_map(|u| match u {
        TableUpdate::AddSnapshot { snapshot } => Some(snapshot.summary().operation.as_str()),
        _ => None,
    });
    let schema = change
        .updates
        .iter()
        .any(|u| matches!(u, TableUpdate::AddSchema { .. }));
    let created = change
        .requirements
        .iter()
        .any(|r| matches!(r, basin_table::iceberg::TableRequirement::NotExist));
    match (created, snapshot, schema) {
        (true, _, _) => format!("create table {key}"),
        (false, Some(op), _) => format!("{op} to {key}"),
        (false, None, true) => format!("change the schema of {key}"),
        (false, None, false) => format!("update {key}"),
    }
}
