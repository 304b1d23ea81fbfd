//! DataFusion catalog and schema providers over the contents of one commit.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use basin_catalog::{Content, Key, Resolved, Result};
use basin_table::Tables;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use iceberg_datafusion::IcebergStaticTableProvider;

/// The namespaces and tables of one commit. The list is read once per session; table
/// metadata is loaded when a query names the table.
#[derive(Debug)]
pub(crate) struct RefCatalog {
    namespaces: BTreeMap<String, Arc<RefSchema>>,
}

#[derive(Debug)]
pub(crate) struct RefSchema {
    tables: Tables,
    /// table name -> (key, metadata location)
    entries: BTreeMap<String, (Key, String)>,
    /// Views a script created (`CREATE VIEW`): they live for this session only.
    views: RwLock<BTreeMap<String, Arc<dyn TableProvider>>>,
}

impl RefCatalog {
    pub(crate) async fn load(tables: Tables, at: &Resolved) -> Result<Self> {
        let contents = tables.catalog().contents(at).await?;
        let mut namespaces: BTreeMap<String, BTreeMap<String, (Key, String)>> = BTreeMap::new();
        for (key, content) in contents {
            match content {
                Content::Namespace { .. } => {
                    namespaces.entry(key.to_string()).or_default();
                }
                Content::Table { metadata_location } => {
                    let ns = key.namespace().map(|n| n.to_string()).unwrap_or_default();
                    namespaces
                        .entry(ns)
                        .or_default()
                        .insert(key.name().to_string(), (key.clone(), metadata_location));
                }
            }
        }
        Ok(Self {
            namespaces: namespaces
                .into_iter()
                .map(|(ns, entries)| {
                    (
                        ns,
                        Arc::new(RefSchema {
                            tables: tables.clone(),
                            entries,
                            views: RwLock::default(),
                        }),
                    )
                })
                .collect(),
        })
    }

    pub(crate) fn has_namespace(&self, name: &str) -> bool {
        self.namespaces.contains_key(name)
    }

    pub(crate) fn namespace_names(&self) -> Vec<String> {
        self.namespaces.keys().cloned().collect()
    }

    /// Every table as `ns.table`.
    pub(crate) fn table_names(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .flat_map(|(ns, s)| s.entries.keys().map(move |t| format!("{ns}.{t}")))
            .collect()
    }
}

impl CatalogProvider for RefCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.namespace_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.namespaces
            .get(name)
            .map(|s| s.clone() as Arc<dyn SchemaProvider>)
    }
}

#[async_trait]
impl SchemaProvider for RefSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let views = self.views.read().expect("views lock");
        self.entries.keys().chain(views.keys()).cloned().collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(view) = self.views.read().expect("views lock").get(name) {
            return Ok(Some(view.clone()));
        }
        let Some((key, location)) = self.entries.get(name) else {
            return Ok(None);
        };
        let table = self
            .tables
            .load_from(key, location)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let provider = IcebergStaticTableProvider::try_new_from_table(table)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(Arc::new(provider)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.entries.contains_key(name) || self.views.read().expect("views lock").contains_key(name)
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if self.entries.contains_key(&name) {
            return Err(DataFusionError::Plan(format!(
                "`{name}` is a table; a view cannot replace it"
            )));
        }
        Ok(self.views.write().expect("views lock").insert(name, table))
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.views.write().expect("views lock").remove(name) {
            Some(view) => Ok(Some(view)),
            None if self.entries.contains_key(name) => Err(DataFusionError::Plan(format!(
                "`{name}` is a table; drop tables with `basin table rm`"
            ))),
            None => Ok(None),
        }
    }
}
