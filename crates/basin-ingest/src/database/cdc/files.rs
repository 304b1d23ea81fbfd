//! The data files a batch rewrites: those that may hold its keys (by the manifests' column
//! bounds), read whole, and their rows lined up with the table's current schema.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use basin_core::{Error, Result};
use futures::{StreamExt, TryStreamExt};
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::Datum;
use iceberg::table::Table;

/// Keys in one batch past which the files that may hold them are found by the keys' range
/// instead of the keys themselves.
const MAX_KEYS_IN_FILTER: usize = 1000;

/// `batch` as `schema` (by column name; a column the batch lacks, added since its file was
/// written, is NULL), with `schema`'s field ids and list element fields.
pub(crate) fn cast_to(schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow::compute::cast(c, f.data_type()),
            None => Ok(arrow::array::new_null_array(f.data_type(), rows)),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(format!("cannot line up columns: {e}")))?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::internal(format!("cannot line up columns: {e}")))
}

/// The live files of `table` that may hold one of the keys (by the manifests' column bounds
/// when the key is one int, long or string column), each to be read whole.
pub(crate) async fn candidate_files(
    table: &Table,
    key_columns: &[String],
    keys: &RecordBatch,
    all: bool,
) -> Result<Vec<iceberg::scan::FileScanTask>> {
    let filter = match key_columns {
        [column] if !all => key_filter(column, keys.column(0)),
        _ => None,
    };
    let tasks = basin_table::planned_files(table, filter).await?;
    Ok(tasks
        .into_iter()
        .map(|mut task| {
            // Every row of the file is read: the filter only chose the files.
            task.predicate = None;
            task
        })
        .collect())
}

fn key_filter(column: &str, keys: &ArrayRef) -> Option<Predicate> {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Int32Type, Int64Type};
    let datums: Vec<Datum> = match keys.data_type() {
        DataType::Int32 => keys
            .as_primitive::<Int32Type>()
            .iter()
            .flatten()
            .map(Datum::int)
            .collect(),
        DataType::Int64 => keys
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .map(Datum::long)
            .collect(),
        DataType::Utf8 => keys
            .as_string::<i32>()
            .iter()
            .flatten()
            .map(Datum::string)
            .collect(),
        _ => return None,
    };
    if datums.len() != keys.len() || datums.is_empty() {
        return None; // a NULL key: no bounds to go by
    }
    let reference = Reference::new(column);
    if datums.len() <= MAX_KEYS_IN_FILTER {
        return Some(reference.is_in(datums));
    }
    let min = datums
        .iter()
        .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))?
        .clone();
    let max = datums
        .iter()
        .max_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))?
        .clone();
    Some(
        Reference::new(column)
            .greater_than_or_equal_to(min)
            .and(reference.less_than_or_equal_to(max)),
    )
}

pub(crate) async fn read_file(
    table: &Table,
    task: iceberg::scan::FileScanTask,
) -> Result<Vec<RecordBatch>> {
    let context = format!("cannot read `{}` to apply changes", table.identifier());
    let reader = iceberg::arrow::ArrowReaderBuilder::new(
        table.file_io().clone(),
        iceberg::Runtime::try_current().map_err(basin_table::from_iceberg(&context))?,
    )
    .build();
    let tasks = futures::stream::iter(vec![Ok(task)]).boxed();
    reader
        .read(tasks)
        .map_err(basin_table::from_iceberg(&context))?
        .stream()
        .try_collect()
        .await
        .map_err(basin_table::from_iceberg(&context))
}
