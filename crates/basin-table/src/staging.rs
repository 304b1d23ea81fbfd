//! A one-table iceberg `Catalog` that stages changes instead of committing them.
//!
//! iceberg-rust's `Transaction` produces snapshots (fast append, schema changes) but commits
//! only through the `Catalog` trait. Basin's commits go to a branch of the versioned catalog,
//! possibly together with other keys, so this catalog only checks requirements, applies the
//! updates and writes the new `metadata.json`; the caller then moves the branch.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use iceberg::{
    Catalog, MetadataLocation, Namespace, NamespaceIdent, Result, TableCommit, TableCreation,
    TableIdent, TableRequirement, TableUpdate,
};
use tokio::sync::Mutex;

#[derive(Debug)]
pub(crate) struct StagingCatalog {
    table: Mutex<Table>,
}

impl StagingCatalog {
    pub(crate) fn new(table: Table) -> Self {
        Self {
            table: Mutex::new(table),
        }
    }

    pub(crate) async fn into_table(self) -> Table {
        self.table.into_inner()
    }
}

fn unsupported<T>(what: &str) -> Result<T> {
    Err(iceberg::Error::new(
        iceberg::ErrorKind::FeatureUnsupported,
        format!("{what} is not part of staging a table change"),
    ))
}

/// Checks `requirements` against `table`, applies `updates` and writes the next metadata file.
/// Returns the table as it will be once the caller commits its new metadata location.
pub(crate) async fn stage_updates(
    table: &Table,
    requirements: &[TableRequirement],
    updates: Vec<TableUpdate>,
) -> Result<Table> {
    for requirement in requirements {
        requirement.check(Some(table.metadata()))?;
    }
    let current = table.metadata_location_result()?.to_string();
    let mut builder: TableMetadataBuilder =
        table.metadata().clone().into_builder(Some(current.clone()));
    for update in updates {
        builder = update.apply(builder)?;
    }
    let metadata: TableMetadata = builder.build()?.metadata;
    let location = MetadataLocation::from_str(&current)?
        .with_next_version()
        .with_new_metadata(&metadata);
    metadata.write_to(table.file_io(), &location).await?;
    Table::builder()
        .identifier(table.identifier().clone())
        .metadata(metadata)
        .metadata_location(location.to_string())
        .file_io(table.file_io().clone())
        .runtime(iceberg::Runtime::try_current()?)
        .build()
}

#[async_trait]
impl Catalog for StagingCatalog {
    async fn list_namespaces(&self, _: Option<&NamespaceIdent>) -> Result<Vec<NamespaceIdent>> {
        unsupported("listing namespaces")
    }
    async fn create_namespace(
        &self,
        _: &NamespaceIdent,
        _: HashMap<String, String>,
    ) -> Result<Namespace> {
        unsupported("creating a namespace")
    }
    async fn get_namespace(&self, _: &NamespaceIdent) -> Result<Namespace> {
        unsupported("loading a namespace")
    }
    async fn namespace_exists(&self, _: &NamespaceIdent) -> Result<bool> {
        unsupported("checking a namespace")
    }
    async fn update_namespace(&self, _: &NamespaceIdent, _: HashMap<String, String>) -> Result<()> {
        unsupported("updating a namespace")
    }
    async fn drop_namespace(&self, _: &NamespaceIdent) -> Result<()> {
        unsupported("dropping a namespace")
    }
    async fn list_tables(&self, _: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        unsupported("listing tables")
    }
    async fn create_table(&self, _: &NamespaceIdent, _: TableCreation) -> Result<Table> {
        unsupported("creating a table")
    }
    async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        let table = self.table.lock().await;
        if table.identifier() != ident {
            return unsupported("loading another table");
        }
        Ok(table.clone())
    }
    async fn drop_table(&self, _: &TableIdent) -> Result<()> {
        unsupported("dropping a table")
    }
    async fn purge_table(&self, _: &TableIdent) -> Result<()> {
        unsupported("purging a table")
    }
    async fn table_exists(&self, ident: &TableIdent) -> Result<bool> {
        Ok(self.table.lock().await.identifier() == ident)
    }
    async fn rename_table(&self, _: &TableIdent, _: &TableIdent) -> Result<()> {
        unsupported("renaming a table")
    }
    async fn register_table(&self, _: &TableIdent, _: String) -> Result<Table> {
        unsupported("registering a table")
    }
    async fn update_table(&self, mut commit: TableCommit) -> Result<Table> {
        let mut table = self.table.lock().await;
        let staged =
            stage_updates(&table, &commit.take_requirements(), commit.take_updates()).await?;
        *table = staged.clone();
        Ok(staged)
    }
}
