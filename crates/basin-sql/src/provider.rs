//! DataFusion catalog and schema providers over the contents of one commit.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use basin_catalog::{Content, Key, Resolved};
use basin_core::Result;
use basin_table::Tables;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use iceberg_datafusion::IcebergStaticTableProvider;

use crate::engine::Engine;
use crate::pruned::PrunedScan;

/// The catalog name DataFusion sees; users write `ns.table`.
pub const CATALOG: &str = "basin";

/// The namespaces and tables of one commit. The list is read once per session; table
/// metadata is loaded when a query names the table.
#[derive(Debug)]
pub(crate) struct RefCatalog {
    namespaces: BTreeMap<String, Arc<RefSchema>>,
    /// Schemas a front door adds for one session (the Postgres endpoint's `pg_catalog`).
    added: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

#[derive(Debug)]
pub(crate) struct RefSchema {
    engine: Engine,
    tables: Tables,
    /// table name -> (key, metadata location)
    entries: BTreeMap<String, (Key, String)>,
    /// Views a script created (`CREATE VIEW`): they live for this session only.
    views: RwLock<BTreeMap<String, Arc<dyn TableProvider>>>,
    /// Strings read as `Utf8View` (DataFusion's `execution.parquet.schema_force_view_types`).
    string_views: bool,
}

impl RefCatalog {
    /// Makes `name` in `namespace` read `table` for this session, in front of any stored
    /// table of that name (a pipeline's model output, newer than the commit read).
    pub(crate) fn shadow(
        &self,
        namespace: &str,
        name: &str,
        table: Arc<dyn TableProvider>,
    ) -> bool {
        match self.namespaces.get(namespace) {
            Some(schema) => {
                schema
                    .views
                    .write()
                    .expect("views lock")
                    .insert(name.to_string(), table);
                true
            }
            None => false,
        }
    }

    pub(crate) async fn load(
        engine: &Engine,
        tables: Tables,
        at: &Resolved,
        string_views: bool,
    ) -> Result<Self> {
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
                            engine: engine.clone(),
                            tables: tables.clone(),
                            entries,
                            views: RwLock::default(),
                            string_views,
                        }),
                    )
                })
                .collect(),
            added: RwLock::default(),
        })
    }

    /// The same tables, read with or without string views, with no views of a session.
    #[cfg(feature = "cluster")]
    pub(crate) fn with_string_views(&self, string_views: bool) -> Self {
        Self {
            namespaces: self
                .namespaces
                .iter()
                .map(|(name, schema)| {
                    let schema = RefSchema {
                        engine: schema.engine.clone(),
                        tables: schema.tables.clone(),
                        entries: schema.entries.clone(),
                        views: RwLock::default(),
                        string_views,
                    };
                    (name.clone(), Arc::new(schema))
                })
                .collect(),
            added: RwLock::default(),
        }
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
        let mut names = self.namespace_names();
        names.extend(self.added.read().expect("schemas lock").keys().cloned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match self.namespaces.get(name) {
            Some(s) => Some(s.clone() as Arc<dyn SchemaProvider>),
            None => self.added.read().expect("schemas lock").get(name).cloned(),
        }
    }

    /// Adds a schema for this session only; namespaces of the commit cannot be replaced.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        if self.namespaces.contains_key(name) {
            return Err(DataFusionError::Plan(format!(
                "`{name}` is a namespace of the lakehouse"
            )));
        }
        Ok(self
            .added
            .write()
            .expect("schemas lock")
            .insert(name.to_string(), schema))
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
        let started = std::time::Instant::now();
        let table = self
            .tables
            .load_from(key, location)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        tracing::debug!(table = %key, ms = crate::deadline::ms(started), "table metadata read");
        let table = match PrunedScan::try_new(
            &self.engine,
            &self.tables,
            key,
            table.clone(),
            self.string_views,
        )? {
            Some(pruned) => return Ok(Some(Arc::new(pruned))),
            None => table,
        };
        if let Some(mapped) = crate::mapped::MappedScan::try_new(&table)? {
            return Ok(Some(Arc::new(mapped)));
        }
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
