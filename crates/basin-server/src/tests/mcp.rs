//! The MCP door as a hostile caller meets it: malformed messages, wrong argument types, a
//! reader's token on the tools that write, paths to resources that are not there. Never a
//! 5xx, and every answer to a request is JSON-RPC carrying its id.

use super::*;
use serde_json::{Value, json};

/// `POST /mcp` of `body` with `role`'s token, and an `MCP-Protocol-Version` if given.
fn mcp_post(server: &Server, role: Role, body: &str, version: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri("/mcp")
        .header(header::HOST, HOST)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", server.secret(role)),
        )
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(version) = version {
        builder = builder.header("mcp-protocol-version", version);
    }
    builder.body(Body::from(body.to_string())).expect("request")
}

async fn call(server: &Server, role: Role, body: &str) -> (StatusCode, Value) {
    let (status, answer) = server.send(mcp_post(server, role, body, None)).await;
    (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
}

fn tool(name: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
        .to_string()
}

#[tokio::test]
async fn mcp_answers_hostile_messages_without_failing() {
    let server = server().await;
    let (status, answer) = call(&server, Role::Reader, "{not json").await;
    assert_eq!(
        (status, answer["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32700))
    );
    let (status, _) = call(&server, Role::Reader, "42").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Only notifications and junk in a batch: nothing to answer.
    let (status, _) = call(
        &server,
        Role::Reader,
        r#"[1, "x", {"jsonrpc": "2.0", "method": "ping"}]"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let tool_errors = [
        (
            Role::Reader,
            tool("create_branch", json!({"name": "agent/x"})),
            "needs a writer",
        ),
        (
            Role::Writer,
            tool("create_branch", json!({"name": "main"})),
            "`main`",
        ),
        (
            Role::Writer,
            tool("create_branch", json!({"name": 5})),
            "needs the argument `name`",
        ),
        (
            Role::Writer,
            tool("run_pipeline", json!({"files": 5, "branch": "dev"})),
            "object of strings",
        ),
        (
            Role::Writer,
            tool(
                "import_file",
                json!({"table": "sales.orders", "branch": "dev", "path": "/etc/passwd"}),
            ),
            "not a `path`",
        ),
        (
            Role::Writer,
            tool(
                "import_file",
                json!({"table": "sales.orders", "branch": "dev", "content": "a\n1\n", "filename": "../../x.csv"}),
            ),
            "dev",
        ),
        (
            Role::Reader,
            tool(
                "query",
                json!({"sql": "SELECT 1", "max_rows": "many", "ref": "nope"}),
            ),
            "nope",
        ),
        (
            Role::Reader,
            tool(
                "query",
                json!({"sql": "INSERT INTO sales.orders VALUES (1)"}),
            ),
            "not allowed",
        ),
        (
            Role::Reader,
            tool("describe_table", "just a string".into()),
            "needs the argument `table`",
        ),
        (
            Role::Reader,
            tool("diff", json!({"from": "main", "to": "x@y@z"})),
            "",
        ),
    ];
    for (role, body, says) in tool_errors {
        let (status, answer) = call(&server, role, &body).await;
        assert_eq!(status, StatusCode::OK, "{body}: {answer}");
        assert_eq!(answer["id"], 7, "{body}: {answer}");
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            answer["result"]["isError"] == true && text.contains(says),
            "{body}: {answer}"
        );
    }

    let protocol_errors = [
        (tool("no_such_tool", json!({})), -32602),
        (json!({"jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": {"uri": "basin://tables/"}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": {"uri": "basin://tables/main/sales.nope"}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": {"uri": "file:///etc/passwd"}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 7, "method": "tools/delete"}).to_string(), -32601),
    ];
    for (body, code) in protocol_errors {
        let (status, answer) = call(&server, Role::Reader, &body).await;
        assert_eq!(status, StatusCode::OK, "{body}: {answer}");
        assert_eq!(
            (answer["id"].as_i64(), answer["error"]["code"].as_i64()),
            (Some(7), Some(code)),
            "{body}: {answer}"
        );
    }

    let ping = r#"{"jsonrpc": "2.0", "id": 1, "method": "ping"}"#;
    let (status, _) = server
        .send(mcp_post(&server, Role::Reader, ping, Some("1999-01-01")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .send(mcp_post(&server, Role::Reader, ping, Some("2025-11-25")))
        .await;
    assert_eq!(status, StatusCode::OK);
}
