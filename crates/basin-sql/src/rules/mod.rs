//! Basin's logical optimizer rules, added to DataFusion's in every session Basin plans in
//! (local, and the distributed planners): rewrites of query shapes DataFusion plans poorly,
//! each with its reasons and the TPC-H queries it is for.

use std::sync::Arc;

use datafusion::execution::session_state::SessionStateBuilder;

mod extreme_window;
mod filtered_joins_down;
mod group_window;
mod join_graph;
mod joined_groups;
mod joins;
mod semi_joins_down;

/// `builder` with Basin's rules after DataFusion's.
pub(crate) fn add(builder: SessionStateBuilder) -> SessionStateBuilder {
    builder
        .with_optimizer_rule(Arc::new(filtered_joins_down::FilteredJoinsDown))
        .with_optimizer_rule(Arc::new(semi_joins_down::SemiJoinsDown))
        // Before the next: q17's and q02's aggregates become windows, with no semi-join under them.
        .with_optimizer_rule(Arc::new(group_window::GroupAggregateAsWindow))
        // q15's highest revenue: a window over the revenues the outer query reads.
        .with_optimizer_rule(Arc::new(extreme_window::ExtremeAsWindow))
        .with_optimizer_rule(Arc::new(joined_groups::AggregateJoinedGroupsOnly))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::any::Any;
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use arrow::util::pretty::pretty_format_batches;
    use async_trait::async_trait;
    use datafusion::catalog::{Session, TableProvider};
    use datafusion::common::stats::Precision;
    use datafusion::common::{Result, Statistics};
    use datafusion::datasource::{MemTable, TableType};
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion::prelude::SessionContext;

    /// A table that takes filters as Basin's Iceberg scans do (`pruned.rs`): inexactly, so
    /// plans carry them both in the scan and in a `Filter` above it, as the rules meet them;
    /// and that knows its rows, as they know their snapshot's.
    #[derive(Debug)]
    struct InexactFilters(MemTable, usize);

    impl InexactFilters {
        fn new(schema: SchemaRef, batch: RecordBatch) -> Self {
            let rows = batch.num_rows();
            Self(MemTable::try_new(schema, vec![vec![batch]]).unwrap(), rows)
        }
    }

    #[async_trait]
    impl TableProvider for InexactFilters {
        fn as_any(&self) -> &dyn Any {
            self
        }

        fn schema(&self) -> SchemaRef {
            self.0.schema()
        }

        fn table_type(&self) -> TableType {
            TableType::Base
        }

        fn supports_filters_pushdown(
            &self,
            filters: &[&Expr],
        ) -> Result<Vec<TableProviderFilterPushDown>> {
            Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
        }

        fn statistics(&self) -> Option<Statistics> {
            Some(Statistics::new_unknown(&self.schema()).with_num_rows(Precision::Inexact(self.1)))
        }

        async fn scan(
            &self,
            state: &dyn Session,
            projection: Option<&Vec<usize>>,
            _filters: &[Expr],
            limit: Option<usize>,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            self.0.scan(state, projection, &[], limit).await
        }
    }

    /// Three small tables (`items`: key, qty; `parts`: pkey, brand; `sellers`: skey, zone) with
    /// null keys and keys on one side only; `rules` says whether the session has Basin's rules.
    pub(crate) async fn context(rules: bool) -> SessionContext {
        let mut state = SessionStateBuilder::new().with_default_features();
        if rules {
            state = super::add(state);
        }
        let ctx = SessionContext::new_with_state(state.build());
        let items = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Int64, true),
            Field::new("qty", DataType::Int64, true),
        ]));
        let keys: Vec<Option<i64>> = (0..400).map(|i| (i % 13 != 0).then_some(i % 40)).collect();
        let qty: Vec<Option<i64>> = (0..400).map(|i| Some((i * 7) % 50)).collect();
        let batch = RecordBatch::try_new(
            items.clone(),
            vec![
                Arc::new(Int64Array::from(keys)),
                Arc::new(Int64Array::from(qty)),
            ],
        )
        .unwrap();
        ctx.register_table("items", Arc::new(InexactFilters::new(items, batch)))
            .unwrap();
        let parts = Arc::new(Schema::new(vec![
            Field::new("pkey", DataType::Int64, true),
            Field::new("brand", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            parts.clone(),
            vec![
                Arc::new(Int64Array::from(
                    (0..60).map(|i| (i != 5).then_some(i)).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from((0..60).map(|i| i % 4).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        ctx.register_table("parts", Arc::new(InexactFilters::new(parts, batch)))
            .unwrap();
        let sellers = Arc::new(Schema::new(vec![
            Field::new("skey", DataType::Int64, true),
            Field::new("zone", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            sellers.clone(),
            vec![
                Arc::new(Int64Array::from((0..30).collect::<Vec<_>>())),
                Arc::new(Int64Array::from((0..30).map(|i| i % 3).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        ctx.register_table("sellers", Arc::new(InexactFilters::new(sellers, batch)))
            .unwrap();
        ctx
    }

    /// A query run without Basin's rules and with them: its answer (the same both ways)
    /// and both plans.
    pub(crate) struct Compared {
        pub answer: String,
        pub plain_plan: String,
        pub ruled_plan: String,
    }

    /// Runs `sql` without the rules and with them; panics unless both answer the same.
    pub(crate) async fn compare(sql: &str) -> Compared {
        let (plain, plain_plan) = run(&context(false).await, sql).await;
        let (ruled, ruled_plan) = run(&context(true).await, sql).await;
        assert_eq!(plain, ruled, "the rules changed the answer of {sql}");
        Compared {
            answer: plain,
            plain_plan,
            ruled_plan,
        }
    }

    impl Compared {
        /// Whether the plan with the rules reads `items` once, through a window, where the
        /// plan without them reads it twice.
        pub(crate) fn windowed(&self) -> bool {
            let plan = &self.ruled_plan;
            let once = plan.matches("TableScan: items").count() == 1;
            assert_eq!(once, plan.contains("WindowAggr"), "{plan}");
            let plain = &self.plain_plan;
            assert_eq!(plain.matches("TableScan: items").count(), 2, "{plain}");
            once
        }

        /// Panics unless the answer has rows: a query that keeps nothing proves little.
        pub(crate) fn has_rows(&self) -> &Self {
            let answer = &self.answer;
            assert!(
                answer.lines().count() > 5,
                "the query keeps some rows: {answer}"
            );
            self
        }
    }

    /// The first line of `plan` that holds `text`.
    pub(crate) fn line(plan: &str, text: &str) -> usize {
        plan.lines()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no `{text}` in {plan}"))
    }

    async fn run(ctx: &SessionContext, sql: &str) -> (String, String) {
        let df = ctx.sql(sql).await.unwrap();
        let answer = pretty_format_batches(&df.clone().collect().await.unwrap())
            .unwrap()
            .to_string();
        let plan = df
            .into_optimized_plan()
            .unwrap()
            .display_indent()
            .to_string();
        (answer, plan)
    }
}
