//! Utf8View and BinaryView columns copied into fresh, dense buffers before a hash join keeps
//! them, so that its memory is counted right.
//!
//! Basin reads strings as `Utf8View` (much faster: issue #18's A/B). A view array that went
//! through a filter or a join still points into the big buffers it came from, and DataFusion's
//! hash join counts every buffer of every batch it collects for its build side: the same
//! buffers once per batch. TPC-H q18 at scale 1 holds about 350 MB and was counted past 8 GiB,
//! so a query within any sane `[sql] query_memory_limit` failed as out of memory. The rule
//! below puts a `CompactViewsExec` on the build side of every hash join whose input has view
//! columns; it copies a column's strings into one fresh buffer (arrow's `gc`) when its buffers
//! hold more than four times what its rows use. Nothing else in the plan changes.
//!
//! Written here because DataFusion 53 has no such option; its sorts already compact views
//! the same way.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::HashJoinExec;

use crate::pass_through::{Pass, PassExec};

/// Passes its input's batches on, with sparse view columns compacted.
pub(crate) type CompactViewsExec = PassExec<CompactViews>;

#[derive(Debug, Clone)]
pub(crate) struct CompactViews;

impl Pass for CompactViews {
    const NAME: &'static str = "CompactViewsExec";

    fn batches(
        &self,
        _: usize,
        _: &TaskContext,
    ) -> Box<dyn FnMut(RecordBatch) -> Result<RecordBatch> + Send> {
        Box::new(|batch| Ok(compact_sparse_views(batch)?))
    }
}

/// The batch with each sparse view column compacted.
fn compact_sparse_views(
    batch: RecordBatch,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    if !batch.columns().iter().any(|c| is_sparse_view(c.as_ref())) {
        return Ok(batch);
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8View if is_sparse_view(c.as_ref()) => {
                Arc::new(c.as_string_view().gc()) as ArrayRef
            }
            DataType::BinaryView if is_sparse_view(c.as_ref()) => Arc::new(c.as_binary_view().gc()),
            _ => c.clone(),
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns)
}

/// A view column whose buffers hold more than four times what its rows use (a builder's
/// blocks may hold up to twice).
fn is_sparse_view(column: &dyn Array) -> bool {
    let (held, used) = match column.data_type() {
        DataType::Utf8View => {
            let a = column.as_string_view();
            let held: usize = a.data_buffers().iter().map(|b| b.capacity()).sum();
            (held, a.total_buffer_bytes_used())
        }
        DataType::BinaryView => {
            let a = column.as_binary_view();
            let held: usize = a.data_buffers().iter().map(|b| b.capacity()).sum();
            (held, a.total_buffer_bytes_used())
        }
        _ => return false,
    };
    held > 4 * used
}

/// Puts a `CompactViewsExec` on the build side (the left input) of every hash join whose build
/// side has view columns.
#[derive(Debug)]
pub(crate) struct CompactBuildSideViews;

impl PhysicalOptimizerRule for CompactBuildSideViews {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.as_any().downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            let build = join.left().clone();
            let has_views = build
                .schema()
                .fields()
                .iter()
                .any(|f| matches!(f.data_type(), DataType::Utf8View | DataType::BinaryView));
            if !has_views || build.as_any().is::<CompactViewsExec>() {
                return Ok(Transformed::no(node));
            }
            let probe = join.right().clone();
            let rebuilt = node.clone().with_new_children(vec![
                Arc::new(CompactViewsExec::new(build, CompactViews)),
                probe,
            ])?;
            Ok(Transformed::yes(rebuilt))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "compact_join_build_sides"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringViewArray;
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn a_view_column_taken_from_a_big_one_is_compacted_and_keeps_its_values() {
        let long = |i: usize| format!("a string long enough not to be inlined, number {i}");
        let big = StringViewArray::from_iter_values((0..10_000).map(long));
        // Two rows of ten thousand, still pointing at all of the big buffers.
        let taken =
            arrow::compute::take(&big, &arrow::array::UInt32Array::from(vec![7, 9_999]), None)
                .unwrap();
        assert!(is_sparse_view(taken.as_ref()));
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![taken]).unwrap();
        let before = batch.get_array_memory_size();
        let compacted = compact_sparse_views(batch).unwrap();
        assert!(compacted.get_array_memory_size() * 10 < before, "{before}");
        let values: Vec<&str> = compacted
            .column(0)
            .as_string_view()
            .iter()
            .flatten()
            .collect();
        assert_eq!(values, [long(7).as_str(), long(9_999).as_str()]);
        // A dense column is passed on as it is.
        assert!(!is_sparse_view(&big));
    }
}
