//! Namespaces: folders of tables, versioned like tables.

use basin_catalog::{Commit, CommitRequest, Content, Error, ErrorKind, Key, Operation, Result};

use crate::Lakehouse;

impl Lakehouse {
    pub async fn list_namespaces(&self, at: Option<&str>) -> Result<Vec<String>> {
        let at = self.resolve(at).await?;
        let contents = self.catalog().contents(&at).await?;
        Ok(contents
            .into_iter()
            .filter(|(_, c)| !c.is_table())
            .map(|(k, _)| k.to_string())
            .collect())
    }

    pub async fn create_namespace(&self, name: &str, branch: Option<&str>) -> Result<Commit> {
        let key = Key::parse(name)?;
        let at = self.resolve(branch).await?;
        let branch = at.writable_branch()?;
        if self.catalog().content(&at, &key).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("namespace `{key}` already exists on `{branch}`"),
            ));
        }
        let request =
            CommitRequest::new(branch, at.commit.clone(), format!("create namespace {key}"))
                .with_author(&self.settings().author)
                .with_operations([Operation::Put {
                    key,
                    content: Content::namespace(),
                }]);
        self.catalog().commit(request).await
    }

    pub async fn drop_namespace(&self, name: &str, branch: Option<&str>) -> Result<Commit> {
        let key = Key::parse(name)?;
        let at = self.resolve(branch).await?;
        let branch = at.writable_branch()?;
        match self.catalog().content(&at, &key).await? {
            Some(Content::Namespace { .. }) => {}
            Some(Content::Table { .. }) => {
                return Err(Error::invalid(format!("`{key}` is a table"))
                    .with_hint(format!("use `basin table rm {key}`")));
            }
            None => {
                return Err(Error::not_found(format!(
                    "namespace `{key}` does not exist on `{branch}`"
                )));
            }
        }
        let request =
            CommitRequest::new(branch, at.commit.clone(), format!("drop namespace {key}"))
                .with_author(&self.settings().author)
                .with_operations([Operation::Delete { key }]);
        self.catalog().commit(request).await
    }
}
