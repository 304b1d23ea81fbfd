//! What a query gives back: its batches as they are computed, with its physical plan
//! ([`Running`]), or all of them ([`QueryResult`]); and what its scans read.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use basin_core::Result;
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;

/// The result of the last statement of a script.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub seconds: f64,
    /// Bytes the script's scans read from storage (see [`bytes_scanned`]).
    pub bytes_scanned: u64,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A query being executed: its batches as they are computed, and its physical plan, whose
/// metrics say what it read once the batches are consumed.
pub struct Running {
    pub schema: SchemaRef,
    pub batches: RecordBatchStream,
    pub plan: Arc<dyn ExecutionPlan>,
    /// Whether the answer came from the result cache ([`crate::result_cache`]); its plan
    /// then ran nothing and read nothing.
    pub cached: bool,
}

/// Bytes a physical plan's scans read from storage, from DataFusion's Parquet scan metrics.
/// Scans through iceberg-datafusion (tables with delete files, or in object storage) record
/// no such metric and count 0.
pub fn bytes_scanned(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let own = plan
        .metrics()
        .and_then(|m| m.sum_by_name("bytes_scanned"))
        .map_or(0, |v| v.as_usize() as u64);
    own + plan.children().into_iter().map(bytes_scanned).sum::<u64>()
}

/// Batches of a query, as they are computed.
pub type RecordBatchStream = futures::stream::BoxStream<'static, Result<RecordBatch>>;

pub(crate) async fn collect(batches: RecordBatchStream) -> Result<Vec<RecordBatch>> {
    batches
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()
}

/// Each row of `batches` as its values' text (NULL for a null), as people and models read
/// them: the CLI's tables, an agent's answers.
pub fn text_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| basin_core::Error::internal(format!("showing a value: {e}")))?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// `batch` holding only its own values. A query's last rows often point into far larger
/// buffers: strings read as views point into the pages they were decoded from (q10's twenty
/// customers held megabytes of comments), and a `LIMIT` slices a batch. Kept as they are,
/// those buffers would be kept too (by the result cache) or sent (in an Arrow answer).
pub(crate) fn compact(batch: &RecordBatch) -> RecordBatch {
    use arrow::array::{Array, AsArray, UInt32Array};
    use arrow::datatypes::DataType;
    let columns = batch
        .columns()
        .iter()
        .map(|column| match column.data_type() {
            DataType::Utf8View => Arc::new(column.as_string_view().gc()) as ArrayRef,
            DataType::BinaryView => Arc::new(column.as_binary_view().gc()) as ArrayRef,
            _ => {
                let own = column.to_data().get_slice_memory_size().unwrap_or(0);
                if column.get_buffer_memory_size() <= 2 * own + 4096 {
                    return column.clone();
                }
                let rows = UInt32Array::from_iter_values(0..column.len() as u32);
                arrow::compute::take(column.as_ref(), &rows, None).unwrap_or(column.clone())
            }
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns).unwrap_or_else(|_| batch.clone())
}
