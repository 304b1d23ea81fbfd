//! A table's scan planned per query: the query's filters become an Iceberg predicate, and
//! iceberg prunes the snapshot's manifests (partition summaries) and data files (column
//! bounds in the manifest entries) before DataFusion opens a single file. DataFusion's own
//! Parquet reader then splits the remaining files across all cores and prunes row groups and
//! pages with the same filters.
//!
//! iceberg-datafusion's scan is one partition (one core), so Basin plans the files with
//! iceberg (the snapshot's manifests decide what is live) and hands them to a
//! `ListingTable`. A scan whose files carry delete files is handed to iceberg's own scan,
//! which applies them; so are tables outside the warehouse (iceberg reads any FileIO) and
//! tables with renamed columns (iceberg matches columns by field id).

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use basin_catalog::Key;
use basin_table::Tables;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::TryStreamExt;
use iceberg::scan::FileScanTask;
use iceberg_datafusion::IcebergStaticTableProvider;
use tokio::sync::OnceCell;

use crate::engine::Engine;

/// A table scanned as plain Parquet files. Distributed queries carry it to Ballista's
/// scheduler by its metadata location (`distributed::codec`), where it is loaded again.
#[derive(Debug)]
pub(crate) struct PrunedScan {
    tables: Tables,
    key: Key,
    /// The table's `metadata.json`: immutable, so it names one snapshot exactly.
    location: String,
    table: OnceCell<iceberg::table::Table>,
    /// The table's columns as DataFusion reads them (strings as views, when asked).
    schema: SchemaRef,
    /// Read by the plan codec (distributed SQL) only.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    string_views: bool,
}

/// What distributed SQL's plan codec reads, and builds on the scheduler.
#[cfg(feature = "cluster")]
impl PrunedScan {
    /// A scan that loads its table when first planned (on Ballista's scheduler, from a
    /// plan a client sent). `schema` is the one the client planned with.
    pub(crate) fn decoded(
        tables: &Tables,
        key: Key,
        location: String,
        schema: SchemaRef,
        string_views: bool,
    ) -> Self {
        Self {
            tables: tables.clone(),
            key,
            location,
            table: OnceCell::new(),
            schema,
            string_views,
        }
    }

    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    pub(crate) fn string_views(&self) -> bool {
        self.string_views
    }
}

impl PrunedScan {
    /// `None` for tables iceberg's own scan reads: tables outside the warehouse (`engine`
    /// cannot open their files), and tables whose columns were renamed, or dropped and
    /// added again under the same name (a Parquet scan matches columns by name; iceberg's
    /// by field id).
    pub(crate) fn try_new(
        engine: &Engine,
        tables: &Tables,
        key: &Key,
        table: iceberg::table::Table,
        string_views: bool,
    ) -> DfResult<Option<Self>> {
        let location = table.metadata_location().unwrap_or_default().to_string();
        // A table with a name mapping holds files written by other tools (`basin table
        // add-files`): they may lie outside the warehouse, and lack the columns of their
        // Hive partitions, which iceberg's reader takes from the manifests.
        let mapped = table
            .metadata()
            .properties()
            .contains_key(iceberg::spec::DEFAULT_SCHEMA_NAME_MAPPING);
        if !engine.reads(&location) || renamed_columns(table.metadata()) || mapped {
            return Ok(None);
        }
        let schema = arrow_schema(table.metadata().current_schema(), string_views)?;
        Ok(Some(Self {
            tables: tables.clone(),
            key: key.clone(),
            location,
            table: OnceCell::new_with(Some(table)),
            schema,
            string_views,
        }))
    }

    /// Why a distributed engine cannot run this scan as it is, if it cannot; and the bytes
    /// of its live data files.
    pub(crate) fn distributable(&self) -> std::result::Result<u64, String> {
        if self.table.get().is_none() {
            return Err(format!("`{}` is not loaded", self.key));
        }
        let count = |name: &str| self.summary_count(name).unwrap_or(0);
        if count("total-delete-files") > 0 {
            return Err(format!(
                "`{}` has delete files, which only the single-node scan applies",
                self.key
            ));
        }
        Ok(count("total-files-size"))
    }

    /// A count in the summary of the loaded table's snapshot (`total-records`, ...).
    fn summary_count(&self, name: &str) -> Option<u64> {
        let snapshot = self.table.get()?.metadata().current_snapshot()?;
        snapshot
            .summary()
            .additional_properties
            .get(name)?
            .parse()
            .ok()
    }

    async fn table(&self) -> DfResult<&iceberg::table::Table> {
        self.table
            .get_or_try_init(|| async {
                self.tables
                    .load_from(&self.key, &self.location)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            })
            .await
    }

    /// The live data files that may hold rows matching `filters`.
    async fn plan(&self, filters: &[Expr]) -> DfResult<Vec<FileScanTask>> {
        // Strings read as views compare with view literals, which iceberg's conversion does
        // not know: the same string as a plain literal prunes the same files.
        let filters = filters
            .iter()
            .map(|f| {
                f.clone()
                    .transform(|e| {
                        Ok(match e {
                            Expr::Literal(ScalarValue::Utf8View(v), meta) => {
                                Transformed::yes(Expr::Literal(ScalarValue::Utf8(v), meta))
                            }
                            other => Transformed::no(other),
                        })
                    })
                    .map(|t| t.data)
            })
            .collect::<DfResult<Vec<_>>>()?;
        let table = self.table().await?;
        if table.metadata().current_snapshot().is_none() {
            return Ok(Vec::new());
        }
        let mut scan = table.scan().select_all();
        if let Some(predicate) =
            iceberg_datafusion::physical_plan::convert_filters_to_predicate(&filters)
        {
            scan = scan.with_filter(predicate);
        }
        scan.build()
            .map_err(external)?
            .plan_files()
            .await
            .map_err(external)?
            .try_collect()
            .await
            .map_err(external)
    }
}

/// A table's columns as DataFusion reads them: strings as views, when asked (DataFusion's
/// Parquet reader produces them without copying, and its string kernels are fastest on
/// them).
fn arrow_schema(schema: &iceberg::spec::Schema, string_views: bool) -> DfResult<SchemaRef> {
    let schema = iceberg::arrow::schema_to_arrow_schema(schema).map_err(external)?;
    Ok(Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 if string_views => {
                    Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View))
                }
                _ => f.clone(),
            })
            .collect::<Vec<_>>(),
    )))
}

/// Whether a column of the table ever had another name, or a name another column: older
/// files then hold columns under names the current schema gives to others.
fn renamed_columns(metadata: &iceberg::spec::TableMetadata) -> bool {
    let current = metadata.current_schema();
    metadata.schemas_iter().any(|old| {
        old.field_id_to_name_map().iter().any(|(id, name)| {
            current.name_by_field_id(*id).is_some_and(|now| now != name)
                || current.field_id_by_name(name).is_some_and(|now| now != *id)
        })
    })
}

fn external(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl TableProvider for PrunedScan {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// The rows the snapshot holds (its summary's `total-records`; inexact, as delete files
    /// may remove some): what the join-order rules weigh tables by.
    fn statistics(&self) -> Option<Statistics> {
        let rows = usize::try_from(self.summary_count("total-records")?).ok()?;
        Some(Statistics::new_unknown(&self.schema).with_num_rows(Precision::Inexact(rows)))
    }

    /// Every filter helps choose files, and DataFusion still applies each to the rows.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let started = std::time::Instant::now();
        let tasks = self.plan(filters).await?;
        tracing::debug!(table = %self.key, files = tasks.len(), ms = crate::deadline::ms(started), "data files planned");
        if tasks.iter().any(|t| !t.deletes.is_empty()) {
            let iceberg =
                IcebergStaticTableProvider::try_new_from_table(self.table().await?.clone())
                    .await
                    .map_err(external)?;
            return iceberg.scan(state, projection, filters, limit).await;
        }
        if tasks.is_empty() {
            let schema = match projection {
                Some(columns) => Arc::new(self.schema.project(columns)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        // An object store's keys may hold `%` (Basin percent-encodes partition values in
        // paths); a URL's path is decoded once when parsed, so `%` is escaped first. A local
        // path is taken as a path, `%` and all.
        let urls = tasks
            .iter()
            .map(|t| match t.data_file_path.contains("://") {
                true => ListingTableUrl::parse(t.data_file_path.replace('%', "%25")),
                false => ListingTableUrl::parse(&t.data_file_path),
            })
            .collect::<DfResult<Vec<_>>>()?;
        // Every URL is one file the snapshot names, whatever its name ends with.
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension("")
            .with_collect_stat(true);
        let files: Vec<SnapshotFile> = urls
            .iter()
            .zip(&tasks)
            .map(|(u, t)| SnapshotFile {
                path: u.prefix().clone(),
                name: &t.data_file_path,
                rows: t.record_count,
            })
            .collect();
        let store = state.runtime_env().object_store(&urls[0])?;
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(self.schema.clone());
        let started = std::time::Instant::now();
        let plan = ListingTable::try_new(config)?
            .scan(state, projection, filters, limit)
            .await?;
        tracing::debug!(table = %self.key, ms = crate::deadline::ms(started), "data files' footers read");
        self.check_all_found(&plan, &files, limit, store.as_ref())
            .await?;
        Ok(plan)
    }
}

/// A data file of the scanned snapshot: where the store has it, its name in the table's
/// metadata, and its rows (from its manifest entry).
struct SnapshotFile<'a> {
    path: object_store::path::Path,
    name: &'a str,
    rows: Option<u64>,
}

/// Object-store lookups one scan runs at once.
const LOOKUPS: usize = 32;

impl PrunedScan {
    /// Fails when a data file the snapshot names is missing. A `ListingTable` takes a file
    /// that is not there for an empty folder, so without this check a file removed outside
    /// Basin would silently drop its rows from every answer. A `LIMIT` leaves files out of
    /// `plan` once those before them hold enough rows: if the planned files' rows (from
    /// their manifest entries) reach the limit, the answer needs no other file; else the
    /// files left out are looked up.
    async fn check_all_found(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        files: &[SnapshotFile<'_>],
        limit: Option<usize>,
        store: &dyn object_store::ObjectStore,
    ) -> DfResult<()> {
        use futures::StreamExt;
        use object_store::ObjectStoreExt;
        let mut planned = std::collections::HashSet::new();
        plan.apply(|node| {
            if let Some(source) = node.as_any().downcast_ref::<DataSourceExec>()
                && let Some(config) = source
                    .data_source()
                    .as_any()
                    .downcast_ref::<FileScanConfig>()
            {
                for group in &config.file_groups {
                    planned.extend(group.files().iter().map(|f| f.object_meta.location.clone()));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let (kept, left_out): (Vec<&SnapshotFile>, Vec<&SnapshotFile>) =
            files.iter().partition(|f| planned.contains(&f.path));
        let Some(first) = left_out.first() else {
            return Ok(());
        };
        let missing = match limit {
            None => Some(first.name.to_string()),
            Some(limit) => {
                let rows: Option<u64> = kept.iter().map(|f| f.rows).sum();
                if rows.is_some_and(|rows| rows >= limit as u64) {
                    None
                } else {
                    let owned: Vec<(object_store::path::Path, String)> = left_out
                        .iter()
                        .map(|f| (f.path.clone(), f.name.to_string()))
                        .collect();
                    futures::stream::iter(owned)
                        .map(|(path, name)| async move {
                            let found = store.head(&path).await;
                            matches!(found, Err(object_store::Error::NotFound { .. }))
                                .then_some(name)
                        })
                        .buffer_unordered(LOOKUPS)
                        .filter_map(std::future::ready)
                        .next()
                        .await
                }
            }
        };
        match missing {
            None => Ok(()),
            Some(name) => Err(DataFusionError::External(Box::new(
                basin_core::Error::io(format!(
                    "`{}`: its data file {name} is missing (removed outside Basin?)",
                    self.key
                ))
                .with_hint(format!(
                    "restore the file, or put the table back as it was at an earlier commit: \
                     `basin table revert {} --to <ref@commit>` (`basin log` lists them)",
                    self.key
                ))
                .shown(),
            ))),
        }
    }
}
