//! Identity partition values for data files that do not hold their columns (files added in
//! place from a Hive folder: `basin table add-files`). The Iceberg spec reads such a column
//! from the file's partition tuple; iceberg-rust 0.10's reader does so only for tasks that
//! carry their partition spec, which its own planning leaves out (a TODO in
//! `scan::context`), and gives the values run-end encoded. Every reader of table rows in
//! Basin (SQL, the change feed, compaction) plans with [`give_spec`] and reads through
//! [`plain_batch`].

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use iceberg::scan::FileScanTask;
use iceberg::spec::PartitionSpec;
use iceberg::table::Table;

/// The spec `table`'s tasks were written under, when that is known: tasks carry no spec id,
/// so only while the table has a single spec.
pub fn task_spec(table: &Table) -> Option<Arc<PartitionSpec>> {
    let metadata = table.metadata();
    (metadata.partition_specs_iter().count() == 1
        && !metadata.default_partition_spec().fields().is_empty())
    .then(|| metadata.default_partition_spec().clone())
}

/// `task` with the partition spec its reader needs for the constants.
pub fn give_spec(mut task: FileScanTask, spec: &Option<Arc<PartitionSpec>>) -> FileScanTask {
    if spec.is_some() {
        task.partition_spec = spec.clone();
    }
    task
}

/// `batch` with its run-end encoded columns (the constants) as plain arrays.
pub fn plain_batch(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let encoded = |t: &DataType| matches!(t, DataType::RunEndEncoded(..));
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| encoded(f.data_type()))
    {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::RunEndEncoded(_, values) => {
                let kind = values.data_type().clone();
                columns.push(arrow::compute::cast(column, &kind)?);
                fields.push(Arc::new(
                    Field::new(field.name(), kind, true).with_metadata(field.metadata().clone()),
                ));
            }
            _ => {
                columns.push(column.clone());
                fields.push(field.clone());
            }
        }
    }
    let schema = Schema::new_with_metadata(fields, batch.schema().metadata().clone());
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(schema), columns, &options)
}
