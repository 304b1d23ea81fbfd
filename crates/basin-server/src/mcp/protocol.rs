//! The JSON-RPC methods: each message to its answer, whatever the transport.

use serde_json::{Value, json};

use super::agent::Agent;
use super::errors::Rpc;
use super::{resources, tools};

/// The protocol revisions Basin speaks through `initialize`, oldest first.
pub(crate) const VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The answer to a JSON-RPC message or a batch of them (MCP before 2025-06-18): `None` when
/// it held only notifications and responses. A batch is answered whole, in memory, so it
/// holds at most `[server] mcp_max_batch` messages: ten thousand `tools/list` calls in 310 KB
/// would be answered with 63 MB.
pub(crate) async fn answer_all(agent: &Agent, message: Value) -> Result<Option<Value>, Rpc> {
    match message {
        Value::Array(batch) => {
            let most = agent.state.limits.mcp_max_batch;
            if batch.len() > most {
                agent.state.metrics.limit_hit("mcp_max_batch");
                return Err(Rpc::invalid_request(&format!(
                    "a batch holds at most {most} messages (`[server] mcp_max_batch`), not {}: \
                     send them in smaller batches, or one at a time",
                    batch.len()
                )));
            }
            let mut replies = Vec::new();
            for message in batch {
                replies.extend(answer(agent, message).await);
            }
            Ok((!replies.is_empty()).then_some(Value::Array(replies)))
        }
        message @ Value::Object(_) => Ok(answer(agent, message).await),
        _ => Err(Rpc::invalid_request(
            "a JSON-RPC message is an object (or a batch of them)",
        )),
    }
}

/// The answer to one JSON-RPC message: `None` for a notification or a response.
async fn answer(agent: &Agent, message: Value) -> Option<Value> {
    let id = message.get("id").cloned()?;
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        // A response to a request of ours: Basin sends none, so there is nothing to match.
        return None;
    };
    let params = message.get("params").cloned().unwrap_or(json!({}));
    let result = match method {
        "initialize" => Ok(initialize(&params)),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": tools::list()})),
        "tools/call" => tools::call(agent, &params).await,
        "resources/list" => resources::list(agent).await,
        "resources/templates/list" => Ok(json!({"resourceTemplates": resources::templates()})),
        "resources/read" => resources::read(agent, &params).await,
        other => Err(Rpc::no_method(other)),
    };
    Some(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => e.reply(id),
    })
}

fn initialize(params: &Value) -> Value {
    let asked = params["protocolVersion"].as_str().unwrap_or_default();
    let version = VERSIONS
        .iter()
        .find(|v| **v == asked)
        .unwrap_or(&VERSIONS[VERSIONS.len() - 1]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {}, "resources": {}},
        "serverInfo": {"name": "basin", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "A Basin lakehouse: Apache Iceberg tables under git-like branches. \
            Read any ref with list_tables, describe_table and query. To change data, create a \
            branch of your own (create_branch), import files or run a pipeline there, check \
            the result with diff and query, then propose_merge: a person reviews and merges \
            it into main. Tools never write to main.",
    })
}
