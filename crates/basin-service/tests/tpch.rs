//! The 22 TPC-H queries on Basin return what DuckDB returned on the same data
//! (`tests/data/tpch`: the expected results came from a real DuckDB run; see its README).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::array_value_to_string;
use basin_ingest::ImportRequest;
use basin_service::{Lakehouse, tpch};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_queries_match_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = Lakehouse::init(dir.path(), &basin_service::Placement::default())
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    for table in tpch::TABLES {
        let path = tpch::write_table(data.path(), table, 0.01, 1, 1).unwrap();
        let request = ImportRequest::new(
            vec![path.to_string_lossy().into_owned()],
            format!("tpch.{table}"),
            "main",
        );
        lakehouse.import(request, None).await.unwrap();
    }
    let mut failures = Vec::new();
    for query in 1..=22 {
        let sql =
            std::fs::read_to_string(data_dir().join(format!("queries/q{query:02}.sql"))).unwrap();
        let result = match lakehouse.query(&sql, Some("main"), Some("tpch")).await {
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
        assert_eq!(
            result.schema.fields().len(),
            header.len(),
            "q{query:02}: column count"
        );
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
    assert!(
        failures.is_empty(),
        "TPC-H mismatches:\n{}",
        failures.join("\n")
    );
}
