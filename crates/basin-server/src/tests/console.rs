//! What the console reads: tables with columns, a commit's diff, who calls.

use super::*;

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
