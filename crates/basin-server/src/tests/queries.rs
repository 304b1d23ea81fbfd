//! SQL over HTTP and Postgres: exact numbers, syntax errors, file downloads, deadlines.

use super::*;

#[tokio::test]
async fn query_answers_keep_big_integers_and_decimals_exact() {
    let server = server().await;
    let columns = [
        (
            "CAST('-9223372036854775808' AS BIGINT)",
            "min",
            "\"-9223372036854775808\"",
        ),
        ("9223372036854775807", "max", "\"9223372036854775807\""),
        ("9007199254740993", "past", "\"9007199254740993\""),
        ("9007199254740991", "safe", "9007199254740991"),
        ("-9007199254740991", "safe_low", "-9007199254740991"),
        (
            "CAST(18446744073709551615 AS BIGINT UNSIGNED)",
            "umax",
            "\"18446744073709551615\"",
        ),
        (
            "CAST('9999999999999999999999999999.9999999999' AS DECIMAL(38,10))",
            "wide_max",
            "\"9999999999999999999999999999.9999999999\"",
        ),
        (
            "CAST('-9999999999999999999999999999.9999999999' AS DECIMAL(38,10))",
            "wide_min",
            "\"-9999999999999999999999999999.9999999999\"",
        ),
        ("CAST(0 AS DECIMAL(18,2))", "zero", "\"0.00\""),
        ("CAST(-0.01 AS DECIMAL(18,2))", "cents", "\"-0.01\""),
        ("CAST(2 AS DECIMAL(18,2))", "two", "\"2.00\""),
        ("CAST(10.5 AS DECIMAL(18,2))", "amount", "\"10.50\""),
        ("CAST(7 AS INT)", "int", "7"),
    ];
    let sql = format!(
        "SELECT {}",
        columns
            .iter()
            .map(|(expr, name, _)| format!("{expr} AS {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (status, body) = server.send(query(server.secret(Role::Reader), &sql)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let row = format!(
        "{{{}}}",
        columns
            .iter()
            .map(|(_, name, json)| format!("\"{name}\":{json}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(
        body.contains(&format!("\"rows\":[{row}]")),
        "expected the row {row} in {body}"
    );
}

#[tokio::test]
async fn a_syntax_error_answers_postgres_style_with_line_and_caret() {
    let server = server().await;
    let reader = server.secret(Role::Reader);
    let (status, body) = server
        .send(query(reader, "SELECT 1\nFROM t WHERE id = = 1"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    let message = answer["error"]["message"].as_str().expect("message");
    assert_eq!(
        message,
        "syntax error at or near \"=\"\nLINE 2: FROM t WHERE id = = 1\n                          ^"
    );
    assert_eq!(answer["error"]["hint"], "expected an expression");
    assert!(!body.contains("ParserError"), "{body}");
}

#[tokio::test]
async fn query_answers_download_as_csv_and_parquet_files() {
    let server = server().await;
    let reader = server.secret(Role::Reader);
    let sql = "SELECT * FROM (VALUES (1, CAST(10.5 AS DECIMAL(18,2))), \
               (9007199254740993, CAST(2 AS DECIMAL(18,2)))) AS t(id, amount) ORDER BY id";
    let download = |format: &str| {
        post(
            reader,
            "/api/v1/query",
            serde_json::json!({"sql": sql, "format": format}),
        )
    };
    let (status, headers, csv) = server.respond(download("csv")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"query.csv\""
    );
    assert_eq!(csv, "id,amount\n1,10.50\n9007199254740993,2.00\n");

    let (status, headers, file) = server.respond(download("parquet")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/vnd.apache.parquet"
    );
    assert!(file.starts_with(b"PAR1") && file.ends_with(b"PAR1"));

    let (status, body) = server.send(download("xlsx")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("`xlsx` is not a file format"), "{body}");
}

/// A Postgres statement's time limit counts from the statement's start, planning included
/// (as Postgres' `statement_timeout` does): a plan handed on with its deadline already past
/// stops at its first batch, counted as a timeout, while one with time left runs.
// The statement comes from the Postgres door's parser.
#[cfg(feature = "postgres-wire")]
#[tokio::test]
async fn a_deadline_spent_planning_leaves_less_for_running() {
    use futures::StreamExt;
    use std::time::Duration;
    let server = server().await;
    let at = server.lakehouse.resolve(None).await.expect("main");
    let session = basin_sql::Session::new(
        server.lakehouse.sql(),
        server.lakehouse.iceberg_tables(),
        &at,
        None,
    )
    .await
    .expect("session");
    let statement = || {
        datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser::new()
            .parse("SELECT 1 AS one")
            .expect("parsed")
            .pop()
            .expect("one statement")
    };
    let now = tokio::time::Instant::now();
    let limit = Duration::from_millis(100);
    let counted = || {
        server
            .lakehouse
            .sql()
            .counters()
            .timed_out
            .load(std::sync::atomic::Ordering::Relaxed)
    };

    let plan = session
        .plan_within(statement(), Some((now + Duration::from_secs(60), limit)))
        .await
        .expect("plan");
    let mut running = session
        .execute(plan, Some((now + Duration::from_secs(60), limit)))
        .await
        .expect("runs");
    assert!(running.batches.next().await.expect("a batch").is_ok());
    assert_eq!(counted(), 0);

    let plan = session.plan_within(statement(), None).await.expect("plan");
    let spent = Some((now - Duration::from_millis(1), limit)); // planning took all of it
    let outcome = match session.execute(plan, spent).await {
        Err(e) => Err(e),
        Ok(mut running) => running.batches.next().await.expect("an item").map(drop),
    };
    let e = outcome.expect_err("ran past its deadline");
    assert_eq!(e.kind(), basin_service::ErrorKind::Timeout, "{e}");
    assert_eq!(counted(), 1);
}
