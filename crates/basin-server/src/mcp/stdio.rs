//! MCP's stdio transport (`basin mcp`): one JSON-RPC message per line on stdin, each answer
//! on a line of stdout, nothing else on stdout. The caller is the local user, as on the CLI;
//! its commits name the `mcp` door.

use basin_catalog::actor::{self, Actor};
use basin_core::{Error, Result};
use basin_service::dispatch::Dispatcher;
use basin_service::{Lakehouse, Role};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::agent::Agent;
use super::errors::Rpc;
use super::protocol::answer_all;
use crate::state::AppState;

/// Serves `lakehouse` on stdin and stdout until stdin ends.
pub async fn stdio(lakehouse: Lakehouse) -> Result<()> {
    let dispatcher = Dispatcher::new(lakehouse.clone());
    let agent = Agent {
        state: AppState::new(lakehouse, true, None, dispatcher),
        role: Role::Admin,
        remote: false,
    };
    let me = Actor {
        door: "mcp",
        ..Actor::local()
    };
    let io = |e| Error::io_with("talking MCP over stdin and stdout", e);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await.map_err(io)? {
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(message) => actor::scope(me.clone(), answer_all(&agent, message))
                .await
                .unwrap_or_else(|e| Some(e.reply(Value::Null))),
            Err(e) => Some(Rpc::parse(&e).reply(Value::Null)),
        };
        if let Some(reply) = reply {
            out.write_all(format!("{reply}\n").as_bytes())
                .await
                .map_err(io)?;
            out.flush().await.map_err(io)?;
        }
    }
    Ok(())
}
