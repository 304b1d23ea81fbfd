//! `basin mcp`: the lakehouse as a Model Context Protocol server on stdin and stdout, for
//! coding agents and chat assistants (the door itself is basin-server's `mcp`, which `basin
//! serve` also offers at `/mcp` over HTTP).

use crate::lake::{Context, Lake};

#[derive(clap::Args)]
#[command(
    after_help = "Add it to an agent's MCP servers, run in the lakehouse's folder:
  {\"mcpServers\": {\"basin\": {\"command\": \"basin\", \"args\": [\"--home\", \"/path/to/lake\", \"mcp\"]}}}

Or connect the agent to a server over HTTP, with a token (streamable HTTP):
  {\"mcpServers\": {\"basin\": {\"url\": \"http://127.0.0.1:8181/mcp\",
                              \"headers\": {\"Authorization\": \"Bearer TOKEN\"}}}}

Tools that change nothing: list_tables, describe_table, query (read-only, capped by [server]
mcp_max_rows and mcp_max_bytes), list_refs, log, diff. Tools that change a branch other than
main: create_branch, import_file, run_pipeline, propose_merge (opens a review; a person
merges it). Resources: table schemas (basin://tables/REF/NS.TABLE) and docs pages
(basin://docs/PAGE). See docs/agents.md."
)]
pub struct Args {}

pub async fn run(_args: Args, ctx: &Context) -> anyhow::Result<()> {
    let Lake::Local(lake) = ctx.open().await? else {
        anyhow::bail!(
            basin_core::Error::invalid(
                "`basin mcp` serves a local lakehouse on stdio; a server has its own MCP door"
            )
            .with_hint(
                "point the agent at the server's /mcp with a token (see `basin mcp --help`), or run `basin mcp` where the lakehouse is (`--home PATH`)"
            )
        );
    };
    basin_server::mcp_stdio(lake).await?;
    Ok(())
}
