use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionContext;

/// A session whose pool holds `limit` bytes, with the rule or without.
fn session(limit: usize, reserve: bool) -> SessionContext {
    let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(limit));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(pool.clone())
        .build_arc()
        .unwrap();
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_runtime_env(runtime);
    if reserve {
        state = state.with_analyzer_rule(Arc::new(super::Reserve::new(pool)));
    }
    SessionContext::new_with_state(state.build())
}

async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, String> {
    match ctx.sql(sql).await {
        Ok(frame) => frame.collect().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

const LIMIT: usize = 64 << 20;

#[tokio::test]
async fn a_function_making_more_than_the_pool_holds_is_refused_before_it_makes_it() {
    let ctx = session(LIMIT, true);
    for (sql, function) in [
        ("SELECT length(repeat('x', 200000000))", "repeat"),
        ("SELECT generate_series(1, 100000000)", "generate_series"),
        (
            "SELECT cardinality(array_repeat(1, 100000000))",
            "array_repeat",
        ),
        ("SELECT length(lpad('x', 100000000))", "lpad"),
        (
            "SELECT cardinality(range(TIMESTAMP '2000-01-01', TIMESTAMP '2100-01-01', \
             INTERVAL '1 second'))",
            "range",
        ),
        (
            "SELECT length(s || s || s || s || s || s || s || s || s || s || s || s) \
             FROM (SELECT repeat('x', 8000000) AS s)",
            "||",
        ),
    ] {
        let error = run(&ctx, sql).await.expect_err(sql);
        assert!(
            error.contains(&format!("function `{function}`'s output")),
            "{sql}: {error}"
        );
    }
}

#[tokio::test]
async fn what_fits_answers_as_without_the_rule_under_the_same_names() {
    let (with, without) = (session(LIMIT, true), session(LIMIT, false));
    for sql in [
        "SELECT length(repeat('ab', 1000)) AS n, 'a' || 'b', cardinality(generate_series(1, 10))",
        "SELECT concat(s, s), s || 'x' FROM (SELECT repeat('y', 3) AS s)",
        "SELECT lpad(CAST(value AS VARCHAR), 5, '0') FROM range(3)",
    ] {
        let (a, b) = (
            run(&with, sql).await.unwrap(),
            run(&without, sql).await.unwrap(),
        );
        assert!(!a.is_empty(), "{sql}");
        // The same names and values (a constant folded while planning is known not to
        // be null; a call made with the query may be).
        let names = |batches: &[RecordBatch]| {
            batches[0]
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&a), names(&b), "{sql}");
        let values = |batches: &[RecordBatch]| {
            batches
                .iter()
                .map(|b| b.columns().to_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&a), values(&b), "{sql}");
    }
}

#[tokio::test]
async fn a_filters_constants_still_fold_so_that_the_filter_reaches_the_scan() {
    let ctx = session(LIMIT, true);
    ctx.sql("CREATE TABLE t (s VARCHAR) AS VALUES ('ab'), ('cd')")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let frame = ctx
        .sql("SELECT s FROM t WHERE s = 'a' || 'b' AND s <> repeat('x', 3)")
        .await
        .unwrap();
    let plan = frame.clone().into_optimized_plan().unwrap();
    let shown = plan.display_indent().to_string();
    // Folded to constants (and the second condition found implied by the first).
    assert!(
        shown.contains("(\"ab\")") && !shown.contains("||") && !shown.contains("repeat"),
        "{shown}"
    );
    let rows: usize = frame
        .collect()
        .await
        .unwrap()
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_long_constant_on_every_row_reserves_its_copies() {
    let ctx = session(LIMIT, true);
    let long = format!("'{}'", "x".repeat(100_000));
    // 100 kB on each of a batch's 8192 rows: 800 MB.
    let copied = format!("SELECT {long} AS s FROM range(10000)");
    let error = run(&ctx, &copied).await.expect_err("copied");
    assert!(error.contains("a long constant"), "{error}");
    // Its length is a small answer on every row.
    let measured = format!("SELECT length({long}) AS n FROM range(10000)");
    let batches = run(&ctx, &measured).await.unwrap();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 10000);
    assert_eq!(
        batches[0].column(0).as_primitive::<Int32Type>().value(0),
        100_000
    );
}
