//! An operator that passes its input's batches on, each through a function of its own, with
//! its input's partitions, order and schema: the shape of Basin's small physical operators
//! (`view_buffers`' compaction, `window_memory`'s reservation).

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// What a [`PassExec`] does to each batch.
pub(crate) trait Pass: Debug + Clone + Send + Sync + 'static {
    /// The operator's name in plans.
    const NAME: &'static str;

    /// The function each batch of `partition` goes through; it lives as long as the
    /// partition's stream.
    fn batches(
        &self,
        partition: usize,
        context: &TaskContext,
    ) -> Box<dyn FnMut(RecordBatch) -> Result<RecordBatch> + Send>;
}

#[derive(Debug)]
pub(crate) struct PassExec<P: Pass> {
    input: Arc<dyn ExecutionPlan>,
    pass: P,
}

impl<P: Pass> PassExec<P> {
    pub(crate) fn new(input: Arc<dyn ExecutionPlan>, pass: P) -> Self {
        Self { input, pass }
    }
}

impl<P: Pass> DisplayAs for PassExec<P> {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}", P::NAME)
    }
}

impl<P: Pass> ExecutionPlan for PassExec<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.pass.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let schema = input.schema();
        let mut pass = self.pass.batches(partition, &context);
        let passed = input.map(move |batch| batch.and_then(&mut pass));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, passed)))
    }
}
