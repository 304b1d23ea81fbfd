//! Namespaces: folders of tables, versioned like tables, each with string properties.

use std::collections::BTreeMap;

use basin_catalog::{Commit, CommitRequest, Content, Key, Operation, Resolved};
use basin_core::{Error, ErrorKind, Result};
use serde::Serialize;

use crate::Lakehouse;

/// What a properties update did (the Iceberg REST catalog's answer).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PropertiesUpdate {
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Keys asked to be removed that were not there.
    pub missing: Vec<String>,
}

/// Namespaces and their properties, versioned like tables (`basin namespace`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::namespaces`].
#[derive(Clone, Copy)]
pub struct Namespaces<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Namespaces and their properties: see [`Namespaces`].
    pub fn namespaces(&self) -> Namespaces<'_> {
        Namespaces { lake: self }
    }
}

impl Namespaces<'_> {
    pub async fn list(&self, at: Option<&str>) -> Result<Vec<String>> {
        let at = self.lake.resolve(at).await?;
        let contents = self.lake.catalog().contents(&at).await?;
        Ok(contents
            .into_iter()
            .filter(|(_, c)| !c.is_table())
            .map(|(k, _)| k.to_string())
            .collect())
    }

    /// The namespace's properties at `at`; `NotFound` if it does not exist there.
    pub async fn properties(
        &self,
        name: &str,
        at: Option<&str>,
    ) -> Result<BTreeMap<String, String>> {
        let key = Key::parse(name)?;
        let at = self.lake.resolve(at).await?;
        namespace_at(self.lake, &at, &key).await
    }

    pub async fn create(
        &self,
        name: &str,
        branch: Option<&str>,
        properties: BTreeMap<String, String>,
    ) -> Result<Commit> {
        let key = Key::parse(name)?;
        let at = self.lake.resolve(branch).await?;
        let branch = at.writable_branch()?;
        if self.lake.catalog().content(&at, &key).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("namespace `{key}` already exists on `{branch}`"),
            ));
        }
        let request =
            CommitRequest::new(branch, at.commit.clone(), format!("create namespace {key}"))
                .with_operations([Operation::Put {
                    key,
                    content: Content::Namespace { properties },
                }]);
        self.lake.catalog().commit(request).await
    }

    /// Drops an empty namespace; one that still holds tables or namespaces is refused.
    pub async fn drop(&self, name: &str, branch: Option<&str>) -> Result<Commit> {
        let key = Key::parse(name)?;
        let at = self.lake.resolve(branch).await?;
        let branch = at.writable_branch()?;
        namespace_at(self.lake, &at, &key).await?;
        let prefix = format!("{key}.");
        let inside: Vec<String> = self
            .lake
            .catalog()
            .contents(&at)
            .await?
            .into_keys()
            .filter(|k| k.as_str().starts_with(&prefix))
            .map(|k| k.to_string())
            .collect();
        if let Some(first) = inside.first() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "namespace `{key}` on `{branch}` is not empty: it holds {} (`{first}`{})",
                    plural(inside.len(), "entry", "entries"),
                    if inside.len() > 1 { ", ..." } else { "" }
                ),
            )
            .with_hint(format!(
                "drop what is inside first (`basin table rm {first}`)"
            )));
        }
        let request =
            CommitRequest::new(branch, at.commit.clone(), format!("drop namespace {key}"))
                .with_operations([Operation::Delete { key }]);
        self.lake.catalog().commit(request).await
    }

    /// Sets and removes namespace properties in one commit.
    pub async fn update_properties(
        &self,
        name: &str,
        branch: Option<&str>,
        removals: Vec<String>,
        updates: BTreeMap<String, String>,
    ) -> Result<PropertiesUpdate> {
        let key = Key::parse(name)?;
        if let Some(both) = removals.iter().find(|k| updates.contains_key(*k)) {
            return Err(Error::invalid(format!(
                "property `{both}` is both set and removed"
            )));
        }
        let at = self.lake.resolve(branch).await?;
        let branch = at.writable_branch()?;
        let mut properties = namespace_at(self.lake, &at, &key).await?;
        let mut result = PropertiesUpdate::default();
        for k in removals {
            if properties.remove(&k).is_some() {
                result.removed.push(k);
            } else {
                result.missing.push(k);
            }
        }
        result.updated = updates.keys().cloned().collect();
        properties.extend(updates);
        let request = CommitRequest::new(
            branch,
            at.commit.clone(),
            format!("update properties of namespace {key}"),
        )
        .with_operations([Operation::Put {
            key,
            content: Content::Namespace { properties },
        }]);
        self.lake.catalog().commit(request).await?;
        Ok(result)
    }
}

pub(crate) async fn namespace_at(
    lakehouse: &Lakehouse,
    at: &Resolved,
    key: &Key,
) -> Result<BTreeMap<String, String>> {
    match lakehouse.catalog().content(at, key).await? {
        Some(Content::Namespace { properties }) => Ok(properties),
        Some(Content::Table { .. }) => Err(Error::invalid(format!("`{key}` is a table"))),
        None => Err(
            Error::not_found(format!("namespace `{key}` does not exist on `{}`", at.spec))
                .with_hint("list namespaces with `basin namespace ls`"),
        ),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
