//! The result cache at the HTTP door: an identical query on an unmoved branch is answered
//! from it, a new commit is a new answer, and a principal is never handed an answer over
//! tables it may not read.

use super::grants::{granted, import_csv};
use super::*;

/// `POST /api/v1/query` of `sql` as `secret`, with `cache_control` if any: the answer's
/// rows, and whether the result cache answered (its `Basin-Result-Cache` header).
async fn ask(
    server: &Server,
    secret: &str,
    sql: &str,
    cache_control: Option<&str>,
) -> (serde_json::Value, String) {
    let mut request = query(secret, sql);
    if let Some(value) = cache_control {
        request
            .headers_mut()
            .insert(header::CACHE_CONTROL, value.parse().expect("header value"));
    }
    let (status, headers, body) = server.respond(request).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, StatusCode::OK, "{sql}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    let cache = headers
        .get("basin-result-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    (answer["rows"].clone(), cache)
}

#[tokio::test]
async fn a_repeated_query_is_answered_from_the_cache_until_the_branch_moves() {
    let (server, _, _) = granted().await;
    let admin = server.secret(Role::Admin).to_string();
    let total = "SELECT sum(amount) AS total FROM sales.orders";
    let (first, cache) = ask(&server, &admin, total, None).await;
    assert_eq!(
        (first.clone(), cache.as_str()),
        (serde_json::json!([{"total": 13}]), "miss")
    );
    let (again, cache) = ask(&server, &admin, total, None).await;
    assert_eq!((again, cache.as_str()), (first, "hit"));
    let stats = server.lakehouse.sql().result_cache();
    assert_eq!((stats.hits, stats.misses), (1, 1), "{stats:?}");

    // A request that asks for a fresh answer runs the query.
    let (fresh, cache) = ask(&server, &admin, total, Some("max-age=0, no-cache")).await;
    assert_eq!(
        (fresh, cache.as_str()),
        (serde_json::json!([{"total": 13}]), "miss")
    );

    // A commit on the branch: the same text reads the new data.
    import_csv(&server, "sales.orders", "id,amount\n3,4\n")
        .await
        .expect("import");
    let (moved, cache) = ask(&server, &admin, total, None).await;
    assert_eq!(
        (moved, cache.as_str()),
        (serde_json::json!([{"total": 17}]), "miss")
    );
    let (_, cache) = ask(&server, &admin, total, None).await;
    assert_eq!(cache, "hit");
}

#[tokio::test]
async fn answers_that_change_from_run_to_run_are_never_kept() {
    let (server, _, _) = granted().await;
    let admin = server.secret(Role::Admin).to_string();
    for sql in [
        "SELECT now() AS at",
        "SELECT random() AS r",
        "SELECT count(*) AS n FROM sales.orders WHERE amount < random() * 100",
        "CREATE VIEW late AS SELECT now() AS at; SELECT * FROM late",
        "EXPLAIN SELECT * FROM sales.orders",
    ] {
        for _ in 0..2 {
            let (_, cache) = ask(&server, &admin, sql, None).await;
            assert_eq!(cache, "miss", "{sql}");
        }
    }
    assert_eq!(server.lakehouse.sql().result_cache().hits, 0);
}

#[tokio::test]
async fn a_principal_is_never_handed_an_answer_over_tables_it_may_not_read() {
    let (server, ana, _) = granted().await;
    let admin = server.secret(Role::Admin).to_string();
    let tables = "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables \
                  WHERE table_schema IN ('sales', 'hr') ORDER BY t";
    let everything = serde_json::json!([{"t": "hr.salaries"}, {"t": "sales.orders"}]);
    for cache in ["miss", "hit"] {
        assert_eq!(
            ask(&server, &admin, tables, None).await,
            (everything.clone(), cache.to_string())
        );
    }
    // ana reads sales.* only: the same text on the same commit is another answer.
    let (rows, cache) = ask(&server, &ana, tables, None).await;
    assert_eq!(rows, serde_json::json!([{"t": "sales.orders"}]));
    assert_eq!(cache, "miss");
    let salaries = "SELECT count(*) AS n FROM hr.salaries";
    for cache in ["miss", "hit"] {
        let (rows, answered) = ask(&server, &admin, salaries, None).await;
        assert_eq!(
            (rows, answered.as_str()),
            (serde_json::json!([{"n": 1}]), cache)
        );
    }
    let (status, body) = server.send(query(&ana, salaries)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
