//! `basin mcp`: the lakehouse as a Model Context Protocol server on stdin and stdout, for
//! coding agents and chat assistants (the door itself is basin-server's `mcp`, which `basin
//! serve` also offers at `/mcp` over HTTP); with `--remote`, a bridge from stdio to a
//! server's `/mcp`.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::lake::{Context, Lake};
use crate::remote::Remote;

#[derive(clap::Args)]
#[command(
    after_help = "Add it to an agent's MCP servers, run in the lakehouse's folder:
  {\"mcpServers\": {\"basin\": {\"command\": \"basin\", \"args\": [\"--home\", \"/path/to/lake\", \"mcp\"]}}}

Or connect the agent to a server over HTTP, with a token (streamable HTTP):
  {\"mcpServers\": {\"basin\": {\"url\": \"http://127.0.0.1:8181/mcp\",
                              \"headers\": {\"Authorization\": \"Bearer TOKEN\"}}}}
or, for an agent that speaks only stdio, through this command:
  basin --remote http://127.0.0.1:8181 --token TOKEN mcp

Tools that change nothing: list_tables, describe_table, query (read-only, capped by [server]
mcp_max_rows and mcp_max_bytes), list_refs, log, diff. Tools that change a branch other than
main: create_branch, import_file, run_pipeline, propose_merge (opens a review; a person
merges it). Resources: table schemas (basin://tables/REF/NS.TABLE) and docs pages
(basin://docs/PAGE). See docs/agents.md."
)]
pub struct Args {}

pub async fn run(_args: Args, ctx: &Context) -> anyhow::Result<()> {
    match ctx.open().await? {
        Lake::Local(lake) => basin_server::mcp_stdio(lake).await?,
        Lake::Remote(remote) => bridge(&remote).await?,
    }
    Ok(())
}

/// `basin --remote URL mcp`: stdio for an agent that speaks only stdio, each message sent on
/// to the server's `/mcp` with the token. A message the server could not take (unreachable,
/// a refused token) is answered with a JSON-RPC error naming why, so the agent sees it.
async fn bridge(remote: &Remote) -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let id = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|m| m.get("id").cloned());
        let reply = match remote.mcp(line).await {
            Ok(reply) => reply,
            Err(e) => id.map(|id| {
                let hint = e.hint.map(|h| format!(" (hint: {h})")).unwrap_or_default();
                serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": format!("{}{hint}", e.message)}})
                    .to_string()
            }),
        };
        if let Some(reply) = reply {
            out.write_all(format!("{}\n", reply.trim_end()).as_bytes())
                .await?;
            out.flush().await?;
        }
    }
    Ok(())
}
