//! Who may call what: every route x method x role, tokens, and the browser walls.

use super::*;

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
