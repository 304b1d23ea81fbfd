//! The server as an outside caller meets it: every route x method x role, and the browser
//! walls, through the real router (no network).

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use basin_service::{Lakehouse, Role};
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:8181";

struct Server {
    dir: tempfile::TempDir,
    app: Router,
    lakehouse: Lakehouse,
    /// A secret per role.
    tokens: Vec<(Role, String)>,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let lakehouse = Lakehouse::init(dir.path(), &basin_service::Placement::default())
        .await
        .expect("init");
    let mut tokens = Vec::new();
    for role in [Role::Reader, Role::Writer, Role::Admin] {
        let (_, secret) = lakehouse
            .create_token(role.as_str(), role)
            .await
            .expect("token");
        tokens.push((role, secret));
    }
    let app = crate::app(
        lakehouse.clone(),
        false,
        Some(HOST.parse().expect("address")),
    );
    Server {
        dir,
        app,
        lakehouse,
        tokens,
    }
}

impl Server {
    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let (status, _, body) = self.respond(request).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The whole answer: status, headers and body.
    async fn respond(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, axum::body::Bytes) {
        let response = self.app.clone().oneshot(request).await.expect("answer");
        let (status, headers) = (response.status(), response.headers().clone());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, headers, body)
    }

    fn secret(&self, role: Role) -> &str {
        &self
            .tokens
            .iter()
            .find(|(r, _)| *r == role)
            .expect("role")
            .1
    }
}

/// A request as a well-behaved client sends it: JSON body on POST, this server's Host.
fn request(method: &Method, path: &str, secret: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    if let Some(secret) = secret {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {secret}"));
    }
    let body = if *method == Method::POST {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    builder.body(body).expect("request")
}

/// `POST path` with a JSON body.
fn post(secret: &str, path: &str, body: serde_json::Value) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// `POST /api/v1/query` of `sql` with a JSON answer.
fn query(secret: &str, sql: &str) -> Request<Body> {
    post(secret, "/api/v1/query", serde_json::json!({ "sql": sql }))
}

/// Every route the server has, with the least role it declares.
fn routes() -> Vec<(Method, String, Option<Role>)> {
    let fill = |path: &str| {
        path.replace("{name}", "sales.orders")
            .replace("{id}", "0190")
            .replace("{prefix}", "main")
            .replace("{namespace}", "sales")
            .replace("{table}", "orders")
    };
    let mut all: Vec<_> = crate::openapi::endpoints()
        .into_iter()
        .map(|e| (e.method, fill(e.path), e.role))
        .collect();
    all.extend(
        crate::iceberg_rest::endpoints()
            .into_iter()
            .map(|e| (e.method, fill(e.path), Some(e.role))),
    );
    for (asset, _, _) in crate::console::ASSETS {
        all.push((Method::GET, asset.to_string(), None));
    }
    // A path a function may declare (found at run time): writers call functions.
    all.push((
        Method::POST,
        "/hooks/orders".to_string(),
        Some(Role::Writer),
    ));
    all
}

#[tokio::test]
async fn every_route_answers_each_role_as_its_table_declares() {
    let server = server().await;
    let routes = routes();
    assert!(routes.len() > 40, "the walk covers every route");
    for (method, path, needed) in &routes {
        let (status, body) = server.send(request(method, path, None)).await;
        match needed {
            None => assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {path} without a token: {status} {body}"
            ),
            Some(_) => assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without a token: {body}"
            ),
        }
        for role in [Role::Reader, Role::Writer, Role::Admin] {
            let (status, body) = server
                .send(request(method, path, Some(server.secret(role))))
                .await;
            let allowed = needed.is_none_or(|n| role >= n);
            if allowed {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{method} {path} as {}: {status} {body}",
                    role.as_str()
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {}: {body}",
                    role.as_str()
                );
            }
        }
    }
}

#[tokio::test]
async fn a_table_or_namespace_named_metrics_is_no_read() {
    let server = server().await;
    let reader = Some(server.secret(Role::Reader));
    for (method, path) in [
        (Method::DELETE, "/v1/main/namespaces/metrics"),
        (Method::POST, "/v1/main/namespaces/sales/tables/metrics"),
        (Method::DELETE, "/v1/main/namespaces/sales/tables/metrics"),
    ] {
        let (status, body) = server.send(request(&method, path, reader)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
    }
    // The metrics report itself stays open to readers, who send it after a scan.
    let (status, _) = server
        .send(request(
            &Method::POST,
            "/v1/main/namespaces/sales/tables/orders/metrics",
            reader,
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_unknown_token_is_refused_even_where_none_is_needed_for_data() {
    let server = server().await;
    let (status, _) = server
        .send(request(&Method::GET, "/api/v1/refs", Some("not-a-token")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pages_cannot_post_across_sites_or_rebind_a_name() {
    let server = server().await;
    let writer = server.secret(Role::Writer);
    let post = |content_type: Option<&str>, host: &str, custom: bool| {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/branches")
            .header(header::HOST, host)
            .header(header::AUTHORIZATION, format!("Bearer {writer}"));
        if let Some(t) = content_type {
            builder = builder.header(header::CONTENT_TYPE, t);
        }
        if custom {
            builder = builder.header("x-basin-client", "test");
        }
        builder
            .body(Body::from(r#"{"name": "dev"}"#))
            .expect("request")
    };
    for simple in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let (status, body) = server.send(post(simple, HOST, false)).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{simple:?}: {body}"
        );
        assert!(body.contains("X-Basin-Client"), "{body}");
    }
    let (status, body) = server
        .send(post(
            Some("application/json"),
            "rebound.example:8181",
            false,
        ))
        .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    assert!(body.contains("allowed_hosts"), "{body}");
    let (status, body) = server
        .send(post(Some("application/json"), "localhost:8181", false))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_reader_cannot_reach_files_through_http_sql() {
    let server = server().await;
    let reader = server.secret(Role::Reader);
    let secret_file = server.dir.path().join("secret.csv");
    std::fs::write(&secret_file, "a\n42\n").expect("write");
    let target = server.dir.path().join("written.csv");
    let query = |sql: String| query(reader, &sql);
    let file = secret_file.display();
    let out = target.display();
    for (sql, kind) in [
        (
            format!(
                "CREATE SCHEMA s; CREATE EXTERNAL TABLE s.t STORED AS CSV LOCATION '{file}'; SELECT * FROM s.t"
            ),
            "CREATE SCHEMA",
        ),
        (
            format!("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{file}'"),
            "CREATE EXTERNAL TABLE",
        ),
        (format!("COPY (SELECT 1 AS a) TO '{out}'"), "COPY"),
        (
            format!("EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{out}'"),
            "COPY",
        ),
        (format!("SELECT * FROM '{file}'"), ""),
    ] {
        let (status, body) = server.send(query(sql.clone())).await;
        assert!(status.is_client_error(), "{sql}: {status} {body}");
        assert!(
            body.contains(&format!("{kind} is not allowed")) || kind.is_empty(),
            "{sql}: {body}"
        );
        assert!(!body.contains("42"), "{sql} leaked the file: {body}");
    }
    assert!(!target.exists(), "no file was written");
    let (status, body) = server.send(query("EXPLAIN SELECT 1".to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .send(query(
            "CREATE VIEW v AS SELECT 7 AS x; SELECT x * 6 AS answer FROM v".to_string(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["rows"][0]["answer"], 42);
    assert_eq!(answer["row_count"], 1);
    assert_eq!(answer["truncated"], false);
}

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
async fn every_error_answers_with_a_json_body() {
    let server = server().await;
    let admin = server.secret(Role::Admin);
    let build = |method: Method, path: &str, content_type: Option<&str>, body: &str| {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::AUTHORIZATION, format!("Bearer {admin}"));
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        builder.body(Body::from(body.to_string())).expect("request")
    };
    let json = Some("application/json");
    let cases = [
        // Axum's own rejections: no or another content type, bad JSON, a missing field.
        (
            build(Method::POST, "/api/v1/query", None, r#"{"sql":"SELECT 1"}"#),
            "content type",
        ),
        (
            build(
                Method::POST,
                "/api/v1/query",
                Some("text/plain"),
                "SELECT 1",
            ),
            "content type",
        ),
        (build(Method::POST, "/api/v1/query", json, "{"), "JSON"),
        (
            build(Method::POST, "/api/v1/query", json, r#"{"sq":"SELECT 1"}"#),
            "sql",
        ),
        (
            build(Method::GET, "/api/v1/usage?since_ms=lots", None, ""),
            "since_ms",
        ),
        // A method the route does not have, and no route at all.
        (build(Method::DELETE, "/api/v1/query", None, ""), "DELETE"),
        (build(Method::GET, "/api/v1/nope", None, ""), "/api/v1/nope"),
        (
            build(Method::POST, "/v1/main/namespaces", None, "{}"),
            "content type",
        ),
    ];
    for (request, names) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let response = server.app.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&body);
        assert!(status.is_client_error(), "{what}: {status} {body}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{what}: {body}"
        );
        let answer: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.to_lowercase().contains(&names.to_lowercase()),
            "{what}: {body}"
        );
        if what.contains(" /v1/") {
            // The Iceberg REST catalog's errors keep the spec's shape.
            assert_eq!(answer["error"]["code"], status.as_u16(), "{what}: {body}");
            assert!(answer["error"]["type"].is_string(), "{what}: {body}");
        }
    }
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

#[tokio::test]
async fn the_console_reads_tables_with_columns_a_commits_diff_and_who_calls() {
    let server = server().await;
    let reader = Some(server.secret(Role::Reader));
    let get = |path: &str| server.send(request(&Method::GET, path, reader));
    let csv = server.dir.path().join("orders.csv");
    std::fs::write(&csv, "id,amount\n1,10.50\n2,3.25\n").expect("write");
    server
        .lakehouse
        .import(
            basin_ingest::ImportRequest::new(
                vec![csv.display().to_string()],
                "sales.orders",
                "main",
            ),
            None,
        )
        .await
        .expect("import");

    let (status, body) = get("/api/v1/tables?columns=true").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tables: serde_json::Value = serde_json::from_str(&body).expect("json");
    let columns: Vec<(&str, &str)> = tables[0]["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or(""),
                c["type"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(columns, [("id", "long"), ("amount", "decimal(18, 2)")]);
    let (_, plain) = get("/api/v1/tables").await;
    assert!(!plain.contains("columns"), "{plain}");

    let (_, log) = get("/api/v1/log").await;
    let log: serde_json::Value = serde_json::from_str(&log).expect("json");
    let (commit, parent) = (&log[0]["id"], &log[0]["parent"]);
    let (status, body) = get(&format!(
        "/api/v1/diff?from=@{}&to=@{}",
        parent.as_str().expect("parent"),
        commit.as_str().expect("commit")
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let diff: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    let keys: Vec<_> = diff
        .iter()
        .map(|d| d["key"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(keys, ["sales", "sales.orders"]);
    let table = &diff[1];
    assert_eq!(table["change"], "added");
    assert_eq!(table["rows_added"], 2);
    assert_eq!(table["files_added"], 1);
    assert!(table["to_snapshot"].is_string(), "{body}");
    let (status, body) = get("/api/v1/diff?from=main&to=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (_, me) = get("/api/v1/whoami").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&me).expect("json"),
        serde_json::json!({"role": "reader", "token": "reader"})
    );
    let (status, body) = get("/api/v1/functions").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
    let (status, body) = get("/api/v1/events?state=dead").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
    let (status, body) = get("/api/v1/events?state=asleep").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("`asleep` is not an event state"), "{body}");
}

/// A Postgres statement's time limit counts from the statement's start, planning included
/// (as Postgres' `statement_timeout` does): a plan handed on with its deadline already past
/// stops at its first batch, counted as a timeout, while one with time left runs.
#[tokio::test]
async fn a_deadline_spent_planning_leaves_less_for_running() {
    use futures::StreamExt;
    use std::time::Duration;
    let server = server().await;
    let at = server.lakehouse.resolve(None).await.expect("main");
    let session =
        basin_sql::Session::new(server.lakehouse.sql(), server.lakehouse.tables(), &at, None)
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
