//! A Parquet scan answered from kept columns where it can be ([`KeptScan`]), and otherwise
//! run as planned, its files' columns kept once it has read them through.
//!
//! The scan is the plan's own (`DataSourceExec` over `ParquetSource`), kept as the node's
//! child: its partitions, file ranges, order and statistics are the plan's, and a partition
//! whose columns are not all kept runs it as planned. A kept partition yields what the
//! Parquet scan would: its files in order, in each the row groups whose first page lies in
//! the file's range (as DataFusion splits a file), every row of them, in batches of the
//! session's size, up to the scan's limit. The scan's predicate is not applied, as it is not
//! by the Parquet scan either: with `pushdown_filters` off (Basin's default), DataFusion only
//! skips row groups and pages with it, and keeps the filter above the scan. So a scan is only
//! answered so when that holds: no `pushdown_filters`, no partition columns (their values
//! come from the file's path, not its columns), no files with an access plan of their own,
//! no row groups read in reverse, and a projection of plain columns.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use futures::StreamExt;

use arrow::array::RecordBatchOptions;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Statistics, internal_err};
use datafusion::datasource::physical_plan::{FileScanConfig, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column as ColumnExpr;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, displayable,
};

use super::{ColumnCache, FileKey, Found, least_width, reads};

/// `plan` with each Parquet scan that kept columns can answer wrapped in a [`KeptScan`];
/// `plan` itself when `cache` keeps nothing.
pub(crate) fn keep(
    plan: Arc<dyn ExecutionPlan>,
    cache: &Arc<ColumnCache>,
) -> Arc<dyn ExecutionPlan> {
    if !cache.enabled() {
        return plan;
    }
    let wrapped = plan.clone().transform_up(|node| {
        Ok(match KeptScan::over(&node, cache) {
            Some(kept) => Transformed::yes(Arc::new(kept) as Arc<dyn ExecutionPlan>),
            None => Transformed::no(node),
        })
    });
    wrapped.map_or(plan, |t| t.data)
}

/// A Parquet scan (its child) answered per partition from kept columns when all of them
/// are kept, and run as planned otherwise (its files' columns then kept for next time).
pub(crate) struct KeptScan {
    scan: Arc<dyn ExecutionPlan>,
    cache: Arc<ColumnCache>,
    /// `bytes_scanned`: what the Parquet scan would have read of the partitions answered
    /// here (metering bills a query the same, kept or not).
    metrics: ExecutionPlanMetricsSet,
    /// Each output column's name in the files and the type the scan reads it as.
    columns: Vec<(String, DataType)>,
}

impl KeptScan {
    /// A kept scan over `node` when it is a Parquet scan kept columns can answer (see the
    /// module's documentation).
    fn over(node: &Arc<dyn ExecutionPlan>, cache: &Arc<ColumnCache>) -> Option<Self> {
        let exec = node.as_any().downcast_ref::<DataSourceExec>()?;
        let (config, source) = exec.downcast_to_file_source::<ParquetSource>()?;
        let table = source.table_schema();
        let plain = table.table_partition_cols().is_empty()
            && !source.table_parquet_options().global.pushdown_filters
            && config
                .file_groups
                .iter()
                .flat_map(|group| group.files())
                .all(|file| file.extensions.is_none())
            && !displayable(node.as_ref())
                .one_line()
                .to_string()
                .contains("reverse_row_groups=true");
        if !plain {
            return None;
        }
        let schema = node.schema();
        let names: Vec<String> = match source.projection() {
            Some(projection) => projection
                .iter()
                .map(|p| {
                    let column = p.expr.as_any().downcast_ref::<ColumnExpr>()?;
                    let field = table.file_schema().fields().get(column.index())?;
                    (field.name() == column.name()).then(|| field.name().clone())
                })
                .collect::<Option<_>>()?,
            None => table
                .file_schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
        };
        if names.len() != schema.fields().len() {
            return None;
        }
        let columns: Vec<(String, DataType)> = names
            .into_iter()
            .zip(schema.fields())
            .map(|(name, field)| (name, field.data_type().clone()))
            .collect();
        // A scan whose columns cannot all be kept at once (its rows at their least width, 8
        // bytes where that depends on the values) is left as planned: kept in part, its files
        // would be decoded again and again for nothing (TPC-H's lineitem at scale 10 in a
        // cache of 1 GiB).
        let rows = node
            .partition_statistics(None)
            .ok()
            .and_then(|s| s.num_rows.get_value().copied());
        let width: u64 = columns.iter().map(|(_, t)| least_width(t).max(8)).sum();
        if rows.is_some_and(|rows| (rows as u64).saturating_mul(width) > cache.limit) {
            return None;
        }
        Some(Self {
            scan: node.clone(),
            cache: cache.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
            columns,
        })
    }

    fn config(&self) -> DfResult<&FileScanConfig> {
        match self
            .scan
            .as_any()
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.downcast_to_file_source::<ParquetSource>())
        {
            Some((config, _)) => Ok(config),
            None => internal_err!("a kept scan's child is not a Parquet scan"),
        }
    }
}

impl fmt::Debug for KeptScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeptScan")
            .field("columns", &self.columns)
            .finish()
    }
}

impl DisplayAs for KeptScan {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeptColumnsExec: columns={}", self.columns.len())
    }
}

impl ExecutionPlan for KeptScan {
    fn name(&self) -> &str {
        "KeptColumnsExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.scan.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.scan]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(scan), true) => Ok(match Self::over(&scan, &self.cache) {
                Some(kept) => Arc::new(kept),
                None => scan,
            }),
            _ => internal_err!("a kept scan has one child"),
        }
    }

    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Statistics> {
        self.scan.partition_statistics(partition)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let config = self.config()?;
        let files = config
            .file_groups
            .get(partition)
            .map(|group| group.files())
            .unwrap_or_default();
        let store = config.object_store_url.as_str();
        let keys: Vec<FileKey> = files.iter().map(|f| FileKey::new(store, f)).collect();
        let size = context.session_config().batch_size();
        if let Some(found) = self.cache.find(&keys, &self.columns, size) {
            let ranges: Vec<_> = files.iter().map(|f| f.range.clone()).collect();
            MetricBuilder::new(&self.metrics)
                .counter("bytes_scanned", partition)
                .add(found.stored(&ranges));
            let batches = Batches {
                schema: self.schema(),
                found,
                ranges,
                left: config.limit.unwrap_or(usize::MAX),
                at: (0, 0, 0),
            };
            let stream =
                RecordBatchStreamAdapter::new(self.schema(), futures::stream::iter(batches));
            return Ok(datafusion::physical_plan::coop::make_cooperative(Box::pin(
                stream,
            )));
        }
        let stream = self.scan.execute(partition, context.clone())?;
        let store = context
            .runtime_env()
            .object_store(&config.object_store_url)?;
        let files = keys.into_iter().zip(files.iter().cloned()).collect();
        // The files are kept once the scan has read them through: one stopped early (a
        // `LIMIT`, a failed query) leaves them as they were, so that a peek at a large
        // table does not decode it whole.
        if config.limit.is_some() {
            return Ok(stream);
        }
        let (cache, columns) = (self.cache.clone(), self.columns.clone());
        let kept = futures::stream::once(async move { cache.fill(store, files, columns, size) })
            .filter_map(|()| async { None });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream.chain(kept),
        )))
    }
}

/// A kept partition's batches: each file's row groups in its range, batch by batch.
struct Batches {
    schema: SchemaRef,
    found: Found,
    ranges: Vec<Option<datafusion::datasource::listing::FileRange>>,
    /// Rows the scan's limit leaves.
    left: usize,
    /// The next file, row group, and batch in it.
    at: (usize, usize, usize),
}

impl Iterator for Batches {
    type Item = DfResult<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.left == 0 {
                return None;
            }
            let (file, group, batch) = self.at;
            let (layout, columns) = self.found.files.get(file)?;
            let Some(&(start, rows)) = layout.groups.get(group) else {
                self.at = (file + 1, 0, 0);
                continue;
            };
            let in_range = reads(self.ranges[file].as_ref(), start);
            // A scan of no columns (`count(*)`) gives the group's rows in one batch.
            let batches = columns
                .first()
                .map_or(usize::from(rows > 0), |c| c.groups[group].len());
            if !in_range || batch >= batches {
                self.at = (file, group + 1, 0);
                continue;
            }
            self.at = (file, group, batch + 1);
            let length = columns
                .first()
                .map_or(rows, |c| c.groups[group][batch].len());
            let take = length.min(self.left);
            self.left -= take;
            let arrays = columns
                .iter()
                .map(|column| column.groups[group][batch].slice(0, take))
                .collect();
            let options = RecordBatchOptions::new().with_row_count(Some(take));
            return Some(
                RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
                    .map_err(Into::into),
            );
        }
    }
}
