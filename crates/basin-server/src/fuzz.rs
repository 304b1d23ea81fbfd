//! Fuzz target for the Iceberg REST catalog's request bodies (see `basin-fuzz`), sent
//! through the real router (no network) to a lakehouse holding namespace `sales` and table
//! `sales.orders`.
//!
//! An input is `METHOD PATH`, a newline, then the JSON body; `{warehouse}` stands for the
//! warehouse's location (so `register` and `set-location` can point inside it). For any
//! input: no panic and no hang, never a 5xx (that is Basin's bug, not the caller's), and a
//! 4xx carries the spec's body `{"error": {"message", "type", "code"}}` with its status as
//! `code`.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use basin_fuzz::Verdict;
use basin_service::Lakehouse;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:8181";

/// Cases served by one lakehouse before a fresh one, so drops and renames do not leave
/// later cases nothing to change.
const CASES_PER_LAKEHOUSE: usize = 200;

const WORDS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e400",
    "9223372036854775807",
    "9223372036854775808",
    "\"\"",
    "\"sales\"",
    "\"orders\"",
    "\"action\":",
    "\"type\":",
    "\"add-schema\"",
    "\"set-current-schema\"",
    "\"add-spec\"",
    "\"set-default-spec\"",
    "\"add-sort-order\"",
    "\"set-default-sort-order\"",
    "\"add-snapshot\"",
    "\"set-snapshot-ref\"",
    "\"remove-snapshots\"",
    "\"remove-snapshot-ref\"",
    "\"set-location\"",
    "\"set-properties\"",
    "\"remove-properties\"",
    "\"upgrade-format-version\"",
    "\"assign-uuid\"",
    "\"assert-create\"",
    "\"assert-table-uuid\"",
    "\"assert-ref-snapshot-id\"",
    "\"assert-current-schema-id\"",
    "\"assert-last-assigned-field-id\"",
    "\"assert-default-spec-id\"",
    "\"format-version\":",
    "\"schema-id\":",
    "\"snapshot-id\":",
    "\"spec-id\":",
    "\"field-id\":",
    "\"source-id\":",
    "\"transform\":",
    "\"bucket[16]\"",
    "\"truncate[4]\"",
    "\"day\"",
    "\"void\"",
    "\"identity\"",
    "\"long\"",
    "\"decimal(38,10)\"",
    "\"list\"",
    "\"map\"",
    "\"struct\"",
    "\"fields\":",
    "\"required\":",
    "\"location\":",
    "\"{warehouse}/x\"",
    "\"/etc\"",
    "\"..\"",
    "\"metadata-location\":",
    "\"namespace\":",
    "\"identifier\":",
    "\"requirements\":",
    "\"updates\":",
    "\"table-changes\":",
    "%1F",
    "%2F",
    "/v1/main/namespaces/sales/tables/orders",
    "/v1/main/namespaces",
    "\u{1f}",
    "\u{0}",
];

#[test]
fn iceberg_rest_corpus_replays_cleanly() {
    let mut rest = Rest::new();
    basin_fuzz::replay("iceberg_rest", |bytes| rest.check(bytes));
}

#[test]
#[ignore = "fuzzing: run with scripts/fuzz.sh iceberg_rest"]
fn iceberg_rest_mutations() {
    let mut rest = Rest::new();
    basin_fuzz::run("iceberg_rest", WORDS, |bytes| rest.check(bytes));
}

struct Rest {
    runtime: tokio::runtime::Runtime,
    server: Option<(tempfile::TempDir, Router, String)>,
    cases: usize,
}

impl Rest {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Self {
            runtime,
            server: None,
            cases: 0,
        }
    }

    fn check(&mut self, bytes: &[u8]) -> Verdict {
        if self.cases.is_multiple_of(CASES_PER_LAKEHOUSE) {
            self.server = Some(self.runtime.block_on(fresh_server()));
        }
        self.cases += 1;
        let (_, app, warehouse) = self.server.as_ref().expect("a server");
        let text = String::from_utf8_lossy(bytes).replace("{warehouse}", warehouse);
        let (head, body) = text.split_once('\n').unwrap_or((&text, ""));
        let Some((method, path)) = head.split_once(' ') else {
            return Ok(());
        };
        // What hyper would refuse before the router sees it is out of scope.
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return Ok(());
        };
        let Ok(request) = Request::builder()
            .method(&method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
        else {
            return Ok(());
        };
        let (status, answer) = self.runtime.block_on(send(app, request));
        if status.is_server_error() {
            return Err(format!("{method} {path} answered {status}: {answer}"));
        }
        // A 4xx from a route of the protocol has the spec's body. HEAD has no body; the
        // router's own 404 or 405, for a path or method it does not serve, has none, or
        // the body of Basin's own API (`{"error": {"kind", ...}}`: no route, no function).
        let unrouted = matches!(
            status,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
        ) && (answer.is_empty() || answer.contains("\"kind\":"));
        let routed = path.starts_with("/v1/") && !unrouted;
        if status.is_client_error() && method != Method::HEAD && routed {
            let error: serde_json::Value = serde_json::from_str(&answer)
                .map_err(|e| format!("{method} {path} answered {status} with no JSON: {e}"))?;
            let error = &error["error"];
            let spec = error["message"].is_string()
                && error["type"].is_string()
                && error["code"].as_u64() == Some(u64::from(status.as_u16()));
            if !spec {
                return Err(format!(
                    "{method} {path} answered {status} without the spec's error body: {answer}"
                ));
            }
        }
        Ok(())
    }
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A lakehouse with namespace `sales` and an empty table `sales.orders`.
async fn fresh_server() -> (tempfile::TempDir, Router, String) {
    let dir = tempfile::tempdir().expect("a tempdir");
    let lakehouse = Lakehouse::init(dir.path(), &basin_service::Placement::default())
        .await
        .expect("init");
    let warehouse = lakehouse.warehouse().location().to_string();
    let app = crate::app(lakehouse, true, Some(HOST.parse().expect("an address")));
    for (path, body) in [
        ("/v1/main/namespaces", r#"{"namespace":["sales"]}"#),
        (
            "/v1/main/namespaces/sales/tables",
            r#"{"name":"orders","schema":{"type":"struct","schema-id":0,"fields":[
                {"id":1,"name":"id","required":false,"type":"long"},
                {"id":2,"name":"amount","required":false,"type":"decimal(10,2)"}]}}"#,
        ),
    ] {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a request");
        let (status, answer) = send(&app, request).await;
        assert!(status.is_success(), "setting up {path}: {status} {answer}");
    }
    (dir, app, warehouse)
}
