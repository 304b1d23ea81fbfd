//! The Model Context Protocol door: the lakehouse for coding agents and chat assistants,
//! over stdio (`basin mcp`) and over streamable HTTP (`POST /mcp` on `basin serve`, with a
//! bearer token like every other route). One JSON-RPC 2.0 message in, at most one out; the
//! methods an agent needs: `initialize`, `ping`, `tools/list`, `tools/call`,
//! `resources/list`, `resources/templates/list` and `resources/read`.
//!
//! Written by hand: those methods are a few hundred lines of JSON, where the Rust SDK (rmcp)
//! would add its macro, schema and session crates to every build of Basin, and its HTTP
//! transport would serve its requests on tasks of its own, outside the request's actor
//! (`basin_catalog::actor`), which applies the token's grants to every read and commit.
//!
//! An agent reads any ref and writes only to a branch other than `main` (and never merges):
//! it proposes a merge as a review, and a person merges it. Over HTTP the token's role
//! decides further: a reader's token calls the tools that change nothing.

mod agent;
mod args;
mod errors;
mod http;
mod protocol;
mod read;
mod resources;
mod stdio;
mod tools;
mod write;

pub(crate) use http::{not_allowed, post};
pub use stdio::stdio;
