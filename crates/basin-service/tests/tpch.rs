//! The 22 TPC-H queries on Basin return what DuckDB returned on the same data
//! (`tests/data/tpch`: the expected results came from a real DuckDB run; see its README).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::array_value_to_string;
use basin_service::{Lakehouse, tpch};
use basin_sql::distributed;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/tpch")
}

/// The expected result: header and rows of cells ("" for NULL).
fn expected(query: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let path = data_dir().join(format!("sf0.01/q{query:02}.csv"));
    let text = std::fs::read_to_string(&path).unwrap();
    let header: Vec<String> = text
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let schema = Arc::new(Schema::new(
        header
            .iter()
            .map(|h| Field::new(h, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(schema)
        .with_header(true)
        .build(std::fs::File::open(&path).unwrap())
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        for r in 0..batch.num_rows() {
            rows.push(
                (0..batch.num_columns())
                    .map(|c| {
                        let col = batch
                            .column(c)
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .unwrap();
                        if col.is_null(r) {
                            String::new()
                        } else {
                            col.value(r).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    (header, rows)
}

fn same_cell(actual: &str, expected: &str) -> bool {
    if actual == expected {
        return true;
    }
    match (actual.parse::<f64>(), expected.parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() <= 1e-5 + 1e-9 * b.abs(),
        _ => false,
    }
}

/// A lakehouse in `dir` (with `basin_toml` as its settings) holding TPC-H at scale 0.01.
async fn tpch_lakehouse(dir: &Path, basin_toml: &str) -> Lakehouse {
    std::fs::write(dir.join("basin.toml"), basin_toml).unwrap();
    let lakehouse = Lakehouse::init(dir, &basin_service::Placement::default())
        .await
        .unwrap();
    tpch::load(&lakehouse, 0.01, "main").await.unwrap();
    lakehouse
}

fn query_text(query: usize) -> String {
    std::fs::read_to_string(data_dir().join(format!("queries/q{query:02}.sql"))).unwrap()
}

/// Runs the 22 queries; the mismatches with DuckDB's answers.
async fn mismatches(lakehouse: &Lakehouse) -> Vec<String> {
    let mut failures = Vec::new();
    for query in 1..=22 {
        let result = match lakehouse
            .query(&query_text(query), Some("main"), Some("tpch"))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("q{query:02}: {e}"));
                continue;
            }
        };
        let (header, rows) = expected(query);
        let mut actual = Vec::new();
        for batch in &result.batches {
            for r in 0..batch.num_rows() {
                actual.push(
                    (0..batch.num_columns())
                        .map(|c| {
                            let col = batch.column(c);
                            if col.is_null(r) {
                                String::new()
                            } else {
                                array_value_to_string(col, r).unwrap()
                            }
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
        if result.schema.fields().len() != header.len() {
            failures.push(format!(
                "q{query:02}: {} columns, DuckDB has {}",
                result.schema.fields().len(),
                header.len()
            ));
            continue;
        }
        if actual.len() != rows.len() {
            failures.push(format!(
                "q{query:02}: {} rows, DuckDB has {}",
                actual.len(),
                rows.len()
            ));
            continue;
        }
        for (i, (a, e)) in actual.iter().zip(&rows).enumerate() {
            if !a.iter().zip(e).all(|(x, y)| same_cell(x, y)) {
                failures.push(format!("q{query:02} row {i}: basin {a:?} != duckdb {e:?}"));
                break;
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_queries_match_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = tpch_lakehouse(dir.path(), "").await;
    let failures = mismatches(&lakehouse).await;
    assert!(
        failures.is_empty(),
        "TPC-H mismatches:\n{}",
        failures.join("\n")
    );
}

/// Basin's DataFusion defaults: a join whose build side's keys span fewer than 8M values
/// looks them up in an array (DataFusion's own threshold is a span of 1,024), and answers the
/// same. The build side here is three keys spanning 4M.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_over_keys_spanning_millions_looks_them_up_in_an_array() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = tpch_lakehouse(dir.path(), "").await;
    let sql = "SELECT count(*) AS n FROM orders JOIN (VALUES (1), (7), (4000000)) AS d(k) \
               ON o_orderkey = d.k";
    let analyzed = lakehouse
        .query(
            &format!("EXPLAIN ANALYZE {sql}"),
            Some("main"),
            Some("tpch"),
        )
        .await
        .unwrap();
    let plan: String = analyzed
        .batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |r| array_value_to_string(b.column(1), r).unwrap())
        })
        .collect();
    assert!(plan.contains("array_map_created_count=1"), "{plan}");
    // Orders 1 and 7 exist at every scale; 4,000,000 not at 0.01.
    let result = lakehouse
        .query(sql, Some("main"), Some("tpch"))
        .await
        .unwrap();
    let n = array_value_to_string(result.batches[0].column(0), 0).unwrap();
    assert_eq!(n, "2");
}

/// The `EXPLAIN` rows of `sql`, as (plan_type, plan).
async fn explain(lakehouse: &Lakehouse, sql: &str) -> Vec<(String, String)> {
    let result = lakehouse
        .query(&format!("EXPLAIN {sql}"), Some("main"), Some("tpch"))
        .await
        .unwrap();
    let mut rows = Vec::new();
    for batch in &result.batches {
        for r in 0..batch.num_rows() {
            let cell = |c: usize| array_value_to_string(batch.column(c), r).unwrap();
            rows.push((cell(0), cell(1)));
        }
    }
    rows
}

fn engine_row(rows: &[(String, String)]) -> String {
    rows.iter()
        .find(|(kind, _)| kind == "engine")
        .map(|(_, plan)| plan.clone())
        .unwrap_or_else(|| panic!("no engine row in {rows:?}"))
}

/// The same 22 answers from Ballista's executors: a scheduler and two executors on
/// loopback, with every query sent to them (`[sql] engine = "ballista"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tpch_queries_on_ballista_match_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = tpch_lakehouse(dir.path(), "[sql]\nengine = \"ballista\"\n").await;
    let engine = lakehouse.sql();
    let token = lakehouse.cluster_token().await.unwrap();

    // No scheduler yet: the queries run here, and EXPLAIN says why.
    let local = engine_row(&explain(&lakehouse, "SELECT count(*) FROM lineitem").await);
    assert!(local.contains("no SQL scheduler"), "{local}");

    let scheduler =
        distributed::start_scheduler("127.0.0.1:0", engine, lakehouse.iceberg_tables(), &token)
            .await
            .unwrap();
    engine.use_scheduler(&scheduler, &token);
    let none = engine_row(&explain(&lakehouse, "SELECT count(*) FROM lineitem").await);
    assert!(none.contains("no SQL executor"), "{none}");

    let work = tempfile::tempdir().unwrap();
    let mut executors = Vec::new();
    for name in ["one", "two"] {
        let executor = distributed::start_executor(
            &scheduler.addr().to_string(),
            "127.0.0.1:0",
            None,
            2,
            &work.path().join(name),
            engine,
            &token,
        )
        .await
        .unwrap();
        executors.push(executor);
    }
    for _ in 0..100 {
        if scheduler.alive_executors().await == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(scheduler.alive_executors().await, 2);

    let rows = explain(&lakehouse, &query_text(3)).await;
    let engine_said = engine_row(&rows);
    assert!(engine_said.starts_with("ballista"), "{engine_said}");
    let stages: Vec<_> = rows
        .iter()
        .filter(|(kind, _)| kind.starts_with("distributed_plan stage"))
        .collect();
    assert!(stages.len() > 1, "q03 is cut into stages: {rows:?}");
    assert!(
        stages
            .iter()
            .any(|(_, plan)| plan.contains("ShuffleWriterExec")),
        "{stages:?}"
    );

    let failures = mismatches(&lakehouse).await;
    assert!(
        failures.is_empty(),
        "TPC-H mismatches through Ballista:\n{}",
        failures.join("\n")
    );
    // The work was the executors': each fetched stages to run.
    for (executor, name) in executors.iter().zip(["one", "two"]) {
        assert!(executor.tasks_run() > 0, "executor {name} ran no task");
    }

    // A script's views are made again in the distributed session.
    let viewed = lakehouse
        .query(
            "CREATE VIEW nations AS SELECT n_name FROM nation; SELECT count(*) AS n FROM nations",
            Some("main"),
            Some("tpch"),
        )
        .await
        .unwrap();
    assert_eq!(
        array_value_to_string(viewed.batches[0].column(0), 0).unwrap(),
        "25"
    );

    // The scheduler takes plans only with the cluster's token.
    engine
        .join_cluster(&scheduler.addr().to_string(), "not-the-token")
        .expect("a build with the cluster feature");
    let refused = lakehouse
        .query("SELECT count(*) FROM lineitem", Some("main"), Some("tpch"))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("token"),
        "refused without the token: {refused}"
    );
}

/// `auto` keeps queries on small tables here, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_keeps_small_queries_local() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = tpch_lakehouse(
        dir.path(),
        "[sql]\nengine = \"auto\"\ndistributed_threshold = \"1GiB\"\n",
    )
    .await;
    let token = lakehouse.cluster_token().await.unwrap();
    let scheduler = distributed::start_scheduler(
        "127.0.0.1:0",
        lakehouse.sql(),
        lakehouse.iceberg_tables(),
        &token,
    )
    .await
    .unwrap();
    lakehouse.sql().use_scheduler(&scheduler, &token);
    let said = engine_row(&explain(&lakehouse, "SELECT count(*) FROM lineitem").await);
    assert!(said.contains("under [sql] distributed_threshold"), "{said}");
    let count = lakehouse
        .query("SELECT count(*) FROM lineitem", Some("main"), Some("tpch"))
        .await
        .unwrap();
    assert_eq!(count.num_rows(), 1);
}
