//! The Model Context Protocol door ([`crate::mcp`]), for AI agents.

use axum::http::Method;
use axum::routing::{delete, get, post};
use basin_service::Role;

use super::endpoint::Endpoint;
use crate::mcp;

pub(super) fn endpoints() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    vec![
        Endpoint {
            method: Method::POST,
            path: "/mcp",
            role: reader,
            summary: "MCP's streamable HTTP transport (stateless, JSON answers): a JSON-RPC \
                      message (initialize, tools/list, tools/call, resources/list, \
                      resources/read, ...) or a batch; 202 for a notification. Tools that \
                      write need a writer's token and never write to main (docs/agents.md)",
            query: &[],
            body: &[("jsonrpc", "string", "\"2.0\", then id, method and params")],
            errors: &[
                (
                    400,
                    "not JSON, not JSON-RPC, or an MCP-Protocol-Version Basin does not speak",
                ),
                (413, "larger than [server] max_body_size"),
            ],
            handler: || post(mcp::post),
        },
        Endpoint {
            method: Method::GET,
            path: "/mcp",
            role: reader,
            summary: "405: Basin opens no server stream (each tool answers its own request)",
            query: &[],
            body: &[],
            errors: &[(405, "always")],
            handler: || get(mcp::not_allowed),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/mcp",
            role: reader,
            summary: "405: Basin keeps no MCP session to end",
            query: &[],
            body: &[],
            errors: &[(405, "always")],
            handler: || delete(mcp::not_allowed),
        },
    ]
}
