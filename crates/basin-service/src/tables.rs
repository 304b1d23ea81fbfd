//! Table-level operations: list, show, drop, revert.

use basin_catalog::{Commit, CommitRequest, Content, Error, Key, Operation, Result};
use basin_table::{TableSummary, Tables};
use serde::Serialize;

use crate::Lakehouse;

/// A row of `basin table ls`.
#[derive(Clone, Debug, Serialize)]
pub struct TableEntry {
    pub table: String,
    pub metadata_location: String,
}

impl Lakehouse {
    pub async fn list_tables(&self, at: Option<&str>) -> Result<Vec<TableEntry>> {
        let at = self.resolve(at).await?;
        Ok(self
            .catalog()
            .contents(&at)
            .await?
            .into_iter()
            .filter_map(|(k, c)| match c {
                Content::Table { metadata_location } => Some(TableEntry {
                    table: k.to_string(),
                    metadata_location,
                }),
                Content::Namespace { .. } => None,
            })
            .collect())
    }

    pub async fn show_table(&self, name: &str, at: Option<&str>) -> Result<TableSummary> {
        let key = Key::table(name)?;
        let at = self.resolve(at).await?;
        let table = self.tables().load(&at, &key).await?;
        Ok(Tables::summarize(&key, &table))
    }

    /// Removes the table from `branch`. Its files stay: other refs and history may use them.
    pub async fn drop_table(&self, name: &str, branch: Option<&str>) -> Result<Commit> {
        let key = Key::table(name)?;
        let at = self.resolve(branch).await?;
        let branch = at.writable_branch()?;
        self.catalog().table_location(&at, &key).await?;
        let request = CommitRequest::new(branch, at.commit.clone(), format!("drop table {key}"))
            .with_author(&self.settings().author)
            .with_operations([Operation::Delete { key }]);
        self.catalog().commit(request).await
    }

    /// Points the table on `branch` back at its state in `to`, in a new commit.
    pub async fn revert_table(&self, name: &str, to: &str, branch: Option<&str>) -> Result<Commit> {
        let key = Key::table(name)?;
        let at = self.resolve(branch).await?;
        let branch = at.writable_branch()?;
        let past = self.catalog().resolve(to).await?;
        let location = self
            .catalog()
            .table_location(&past, &key)
            .await
            .map_err(|e| {
                e.with_hint(format!(
                    "`{key}` did not exist at `{to}`; to remove it, use `basin table rm {key}`"
                ))
            })?;
        if self.catalog().content(&at, &key).await? == Some(Content::table(location.clone())) {
            return Err(Error::invalid(format!(
                "`{key}` on `{branch}` is already as it was at `{to}`"
            )));
        }
        let request = CommitRequest::new(
            branch,
            at.commit.clone(),
            format!("revert table {key} to {to}"),
        )
        .with_author(&self.settings().author)
        .with_operations([Operation::Put {
            key,
            content: Content::table(location),
        }]);
        self.catalog().commit(request).await
    }
}
