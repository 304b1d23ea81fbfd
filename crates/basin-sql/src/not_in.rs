//! `x NOT IN (subquery)` answered from the subquery's side.
//!
//! DataFusion plans `NOT IN` as a null-aware anti join, and DataFusion 53 never swaps one
//! (`join_selection.rs`: `!hash_join.null_aware`). It always builds its hash table from the
//! outer rows, on one core (`CollectLeft`), and emits the rows that found no match only at
//! the end, in one partition. In TPC-H q16 at scale 10 that is 1.19 M rows of `partsupp ⋈ part`
//! collected to be probed by the 56 suppliers of the subquery; the grouping above it then
//! runs on one core too (4.1x DuckDB's time, against 1.5x at scale 1; docs/benchmarks.md).
//!
//! [`NotInExec`] turns it around, as DuckDB does. It reads the subquery once into a set of
//! keys, and notes whether the subquery was empty and whether it held a NULL. Then it filters
//! each partition of the outer rows as they stream. SQL's three-valued `NOT IN`:
//! - an empty subquery keeps every row, even one whose key is NULL;
//! - a subquery holding a NULL keeps none;
//! - otherwise a row is kept when its key is not NULL and not in the set.
//!
//! Written here because DataFusion 53 has no null-aware anti join that builds on its right.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::row::{RowConverter, SortField};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{JoinType, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties, execute_stream,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

/// Per key in the set, beside its bytes: the set's slot and the key's own allocation.
const KEY_OVERHEAD: usize = 48;

/// The outer rows whose key is `NOT IN` the subquery's keys (see the module's comment).
#[derive(Debug)]
pub(crate) struct NotInExec {
    outer: Arc<dyn ExecutionPlan>,
    subquery: Arc<dyn ExecutionPlan>,
    outer_key: Arc<dyn PhysicalExpr>,
    subquery_key: Arc<dyn PhysicalExpr>,
    /// The subquery's keys, read once for every partition.
    keys: Arc<OnceCell<Arc<Keys>>>,
}

/// What the subquery held.
#[derive(Debug)]
struct Keys {
    /// Each key in `arrow::row`'s byte form.
    set: HashSet<Box<[u8]>>,
    converter: RowConverter,
    empty: bool,
    has_null: bool,
    _reservation: MemoryReservation,
}

impl NotInExec {
    fn new(
        outer: Arc<dyn ExecutionPlan>,
        subquery: Arc<dyn ExecutionPlan>,
        outer_key: Arc<dyn PhysicalExpr>,
        subquery_key: Arc<dyn PhysicalExpr>,
    ) -> Self {
        Self {
            outer,
            subquery,
            outer_key,
            subquery_key,
            keys: Arc::default(),
        }
    }
}

impl DisplayAs for NotInExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "NotInExec: {} NOT IN {}",
            self.outer_key, self.subquery_key
        )
    }
}

impl ExecutionPlan for NotInExec {
    fn name(&self) -> &'static str {
        "NotInExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// The outer rows' own: a filter keeps their schema, partitions and order.
    fn properties(&self) -> &Arc<PlanProperties> {
        self.outer.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.outer, &self.subquery]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true, false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let subquery = children.swap_remove(1);
        let outer = children.swap_remove(0);
        Ok(Arc::new(Self::new(
            outer,
            subquery,
            self.outer_key.clone(),
            self.subquery_key.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.outer.schema();
        let keys = self.keys.clone();
        let (outer, subquery) = (self.outer.clone(), self.subquery.clone());
        let (outer_key, subquery_key) = (self.outer_key.clone(), self.subquery_key.clone());
        let filtered = futures::stream::once(async move {
            let keys = keys
                .get_or_try_init(|| read_keys(subquery, subquery_key, context.clone()))
                .await?
                .clone();
            let rows = outer.execute(partition, context)?;
            Ok::<_, datafusion::error::DataFusionError>(
                rows.map(move |batch| keys.keep(&batch?, outer_key.as_ref())),
            )
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, filtered)))
    }
}

/// Reads every partition of the subquery into its set of keys, counted against the query's
/// memory limit.
async fn read_keys(
    subquery: Arc<dyn ExecutionPlan>,
    key: Arc<dyn PhysicalExpr>,
    context: Arc<TaskContext>,
) -> Result<Arc<Keys>> {
    let reservation = MemoryConsumer::new("NotInExec").register(context.memory_pool());
    let data_type = key.data_type(&subquery.schema())?;
    let converter = RowConverter::new(vec![SortField::new(data_type)])?;
    let (mut set, mut empty, mut has_null) = (HashSet::new(), true, false);
    let mut batches = execute_stream(subquery, context)?;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        empty = false;
        let column = key.evaluate(&batch)?.into_array(batch.num_rows())?;
        has_null |= column.null_count() > 0;
        let rows = converter.convert_columns(std::slice::from_ref(&column))?;
        for (i, row) in rows.iter().enumerate() {
            if column.is_valid(i) && !set.contains(row.as_ref()) {
                reservation.try_grow(row.as_ref().len() + KEY_OVERHEAD)?;
                set.insert(Box::from(row.as_ref()));
            }
        }
    }
    Ok(Arc::new(Keys {
        set,
        converter,
        empty,
        has_null,
        _reservation: reservation,
    }))
}

impl Keys {
    /// The rows of `batch` that `NOT IN` keeps.
    fn keep(&self, batch: &RecordBatch, key: &dyn PhysicalExpr) -> Result<RecordBatch> {
        if self.empty {
            return Ok(batch.clone());
        }
        if self.has_null {
            return Ok(batch.slice(0, 0));
        }
        let column: ArrayRef = key.evaluate(batch)?.into_array(batch.num_rows())?;
        let rows = self
            .converter
            .convert_columns(std::slice::from_ref(&column))?;
        let kept: BooleanArray = rows
            .iter()
            .enumerate()
            .map(|(i, row)| Some(column.is_valid(i) && !self.set.contains(row.as_ref())))
            .collect();
        Ok(filter_record_batch(batch, &kept)?)
    }
}

/// Replaces each null-aware anti join (`NOT IN` on one key, no other condition, no
/// projection, no row limit) by a [`NotInExec`], unless statistics say its outer rows are the fewer.
#[derive(Debug)]
pub(crate) struct NotInFromTheSubquery;

impl PhysicalOptimizerRule for NotInFromTheSubquery {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.as_any().downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            let eligible = join.null_aware
                && *join.join_type() == JoinType::LeftAnti
                && join.on().len() == 1
                && join.filter().is_none()
                && join.projection.is_none()
                && join.fetch().is_none()
                && !outer_is_smaller(join.left(), join.right())?;
            if !eligible {
                return Ok(Transformed::no(node));
            }
            let (outer_key, subquery_key) = join.on()[0].clone();
            Ok(Transformed::yes(Arc::new(NotInExec::new(
                join.left().clone(),
                join.right().clone(),
                outer_key,
                subquery_key,
            ))))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "not_in_from_the_subquery"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether both sides' row counts are estimated and the outer one is no larger: then
/// DataFusion's join, which builds on the outer rows, is the better one.
fn outer_is_smaller(
    outer: &Arc<dyn ExecutionPlan>,
    subquery: &Arc<dyn ExecutionPlan>,
) -> Result<bool> {
    let rows = |plan: &Arc<dyn ExecutionPlan>| -> Result<Option<usize>> {
        Ok(plan
            .partition_statistics(None)?
            .num_rows
            .get_value()
            .copied())
    };
    Ok(match (rows(outer)?, rows(subquery)?) {
        (Some(outer), Some(subquery)) => outer <= subquery,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::NotInFromTheSubquery;

    fn table(values: &[Option<i64>]) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let column = Arc::new(Int64Array::from(values.to_vec()));
        let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
        // Two partitions, so that the outer rows stream in more than one.
        let half = batch.num_rows() / 2;
        let parts = vec![
            vec![batch.slice(0, half)],
            vec![batch.slice(half, batch.num_rows() - half)],
        ];
        Arc::new(MemTable::try_new(schema, parts).unwrap())
    }

    fn context(rule: bool) -> SessionContext {
        let config = SessionConfig::new().with_target_partitions(2);
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if rule {
            builder = builder.with_physical_optimizer_rule(Arc::new(NotInFromTheSubquery));
        }
        SessionContext::new_with_state(builder.build())
    }

    /// `outer.k NOT IN (SELECT k FROM sub WHERE …)` with and without the rule: the answers,
    /// and whether the rule's plan holds a `NotInExec`.
    async fn not_in(
        outer: &[Option<i64>],
        sub: &[Option<i64>],
        filter: &str,
    ) -> (String, String, bool) {
        let sql = format!(
            "SELECT k FROM outer_rows WHERE k NOT IN (SELECT k FROM sub {filter}) ORDER BY k"
        );
        let mut answers = Vec::new();
        let mut replaced = false;
        for rule in [false, true] {
            let ctx = context(rule);
            ctx.register_table("outer_rows", table(outer)).unwrap();
            ctx.register_table("sub", table(sub)).unwrap();
            let frame = ctx.sql(&sql).await.unwrap();
            let plan = frame.clone().create_physical_plan().await.unwrap();
            if rule {
                replaced = displayable(plan.as_ref())
                    .indent(true)
                    .to_string()
                    .contains("NotInExec");
            }
            answers.push(
                pretty_format_batches(&frame.collect().await.unwrap())
                    .unwrap()
                    .to_string(),
            );
        }
        (answers.remove(0), answers.remove(0), replaced)
    }

    #[tokio::test]
    async fn not_in_keeps_the_rows_sql_keeps() {
        let outer = [Some(1), Some(2), None, Some(3), Some(4), Some(5)];
        for (sub, filter, kept) in [
            // Keys in the set go; a NULL outer key goes too.
            (vec![Some(2), Some(4), Some(4)], "", vec![1, 3, 5]),
            // A NULL among the subquery's keys: nothing is kept.
            (vec![Some(2), None], "", vec![]),
            // An empty subquery: everything is kept, the NULL key too.
            (vec![Some(2), Some(4)], "WHERE k > 100", vec![1, 2, 3, 4, 5]),
        ] {
            let (without, with, replaced) = not_in(&outer, &sub, filter).await;
            assert!(replaced, "the rule did not apply for {sub:?} {filter}");
            assert_eq!(with, without, "for {sub:?} {filter}");
            let rows = with
                .lines()
                .filter(|l| l.starts_with("| ") && !l.contains('k'))
                .count();
            let nulls = usize::from(filter.contains("100"));
            assert_eq!(rows, kept.len() + nulls, "for {sub:?} {filter}:\n{with}");
            for k in kept {
                assert!(
                    with.contains(&format!("| {k} ")),
                    "{k} kept for {sub:?} {filter}:\n{with}"
                );
            }
        }
    }
}
