//! A table's scan planned per query: the query's filters become an Iceberg predicate, and
//! iceberg prunes the snapshot's manifests (partition summaries) and data files (column
//! bounds in the manifest entries) before DataFusion opens a single file. DataFusion's own
//! Parquet reader then splits the remaining files across all cores and prunes row groups and
//! pages with the same filters.
//!
//! iceberg-datafusion's scan is one partition (one core), so Basin plans the files with
//! iceberg (the snapshot's manifests decide what is live) and hands them to a
//! `ListingTable`. A scan whose files carry delete files is handed to iceberg's own scan,
//! which applies them; tables in object storage keep iceberg's scan altogether (it reads any
//! FileIO).

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::TryStreamExt;
use iceberg::scan::FileScanTask;
use iceberg_datafusion::IcebergStaticTableProvider;

#[derive(Debug)]
pub(crate) struct PrunedScan {
    table: iceberg::table::Table,
    /// The table's columns as DataFusion reads them (strings as views, when asked).
    schema: SchemaRef,
}

impl PrunedScan {
    /// `None` for tables iceberg's own scan reads: tables with no snapshot, and tables in
    /// object storage.
    pub(crate) fn try_new(
        table: iceberg::table::Table,
        string_views: bool,
    ) -> DfResult<Option<Self>> {
        let metadata = table.metadata();
        if metadata.current_snapshot().is_none() || metadata.location().contains("://") {
            return Ok(None);
        }
        let schema =
            iceberg::arrow::schema_to_arrow_schema(metadata.current_schema()).map_err(external)?;
        // Strings as views, when asked: DataFusion's Parquet reader produces them without
        // copying, and its string kernels are fastest on them.
        let schema = Arc::new(Schema::new(
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
        ));
        Ok(Some(Self { table, schema }))
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
        let mut scan = self.table.scan().select_all();
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
        let tasks = self.plan(filters).await?;
        if tasks.iter().any(|t| !t.deletes.is_empty()) {
            let iceberg = IcebergStaticTableProvider::try_new_from_table(self.table.clone())
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
        let urls = tasks
            .iter()
            .map(|t| ListingTableUrl::parse(&t.data_file_path))
            .collect::<DfResult<Vec<_>>>()?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_collect_stat(true);
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(self.schema.clone());
        ListingTable::try_new(config)?
            .scan(state, projection, filters, limit)
            .await
    }
}
