//! The scan of a table holding files other tools wrote (`basin table add-files`): iceberg's
//! reader, which matches their columns by the table's name mapping, with the values of
//! identity partitions filled in from the manifests for files that do not hold those columns
//! (a Hive folder's `year=2024/` files), as the Iceberg spec's column projection rules say.
//!
//! iceberg-datafusion's scan reads the same files, but iceberg-rust 0.10 plans its tasks
//! without their partition spec (a TODO in `scan::context`), so its reader leaves such
//! columns null. This scan plans the tasks itself, gives each the spec, and reads them with
//! iceberg's `ArrowReader`. One stream, as iceberg-datafusion's scan.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::expr::Predicate;
use iceberg::table::Table;

fn external(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A table with a name mapping (`schema.name-mapping.default`).
#[derive(Debug)]
pub(crate) struct MappedScan {
    table: Table,
    schema: SchemaRef,
}

impl MappedScan {
    /// `None` unless `table` has a name mapping.
    pub(crate) fn try_new(table: &Table) -> DfResult<Option<Self>> {
        if !table
            .metadata()
            .properties()
            .contains_key(iceberg::spec::DEFAULT_SCHEMA_NAME_MAPPING)
        {
            return Ok(None);
        }
        let schema = iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
            .map_err(external)?;
        Ok(Some(Self {
            table: table.clone(),
            schema: Arc::new(schema),
        }))
    }
}

#[async_trait]
impl TableProvider for MappedScan {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters choose files (manifests) and row groups; DataFusion still applies each.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let output = match projection {
            Some(columns) => Arc::new(self.schema.project(columns)?),
            None => self.schema.clone(),
        };
        let columns = output.fields().iter().map(|f| f.name().clone()).collect();
        Ok(Arc::new(MappedScanExec {
            table: self.table.clone(),
            columns,
            predicate: iceberg_datafusion::physical_plan::convert_filters_to_predicate(filters),
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(output),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
        }))
    }
}

#[derive(Debug)]
struct MappedScanExec {
    table: Table,
    columns: Vec<String>,
    predicate: Option<Predicate>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for MappedScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "MappedScan columns:[{}]", self.columns.join(","))?;
        if let Some(predicate) = &self.predicate {
            write!(f, " predicate:[{predicate}]")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for MappedScanExec {
    fn name(&self) -> &str {
        "MappedScan"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let (table, columns, predicate) = (
            self.table.clone(),
            self.columns.clone(),
            self.predicate.clone(),
        );
        let batches = futures::stream::once(async move {
            let mut scan = table.scan().select(columns);
            if let Some(predicate) = predicate {
                scan = scan.with_filter(predicate);
            }
            let tasks = scan
                .build()
                .map_err(external)?
                .plan_files()
                .await
                .map_err(external)?;
            let spec = basin_table::constants::task_spec(&table);
            // The files chosen, the reader would filter their rows with the predicate too,
            // taking a partition column a file lacks for null: DataFusion filters them.
            let partitioned = spec.is_some();
            let tasks = tasks
                .map_ok(move |task| {
                    let mut task = basin_table::constants::give_spec(task, &spec);
                    if partitioned {
                        task.predicate = None;
                    }
                    task
                })
                .boxed();
            let runtime = iceberg::Runtime::try_current().map_err(external)?;
            let reader = ArrowReaderBuilder::new(table.file_io().clone(), runtime).build();
            let stream = reader.read(tasks).map_err(external)?.stream();
            Ok::<_, DataFusionError>(stream.map_err(external))
        })
        .try_flatten();
        let schema = self.properties.eq_properties.schema().clone();
        let batches = batches.and_then(|batch| {
            std::future::ready(basin_table::constants::plain_batch(batch).map_err(Into::into))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}
