//! `basin serve`: one server process over one lakehouse. It offers Basin's operations over
//! HTTP (health, Prometheus metrics, refs, SQL queries as JSON or Arrow IPC streams), the
//! Iceberg REST catalog protocol under `/v1`, and read-only SQL over the Postgres wire
//! protocol, all behind the same access tokens; and a web console at `/`.
//!
//! Every request gets an id (the caller's `x-request-id`, or a new one), returned in the
//! response and carried by every log line of the request. SIGINT or SIGTERM stops accepting
//! connections, lets requests in flight finish, then stops running functions.
//!
//! Callers are not trusted: each route declares its role ([`auth`]), SQL follows one
//! read-only policy at every door (`basin_sql::policy`), and every resource a caller can
//! make the server spend has a limit in basin.toml's `[server]` and `[sql]` sections, with a
//! metric (see docs/serving.md, "Security").

mod api;
mod auth;
mod console;
mod errors;
mod hosts;
mod http;
mod iceberg_rest;
mod keepalive;
mod lifecycle;
mod mcp;
mod meter;
mod metrics;
pub mod openapi;
#[cfg(feature = "postgres-wire")]
mod postgres;
#[cfg(not(feature = "postgres-wire"))]
mod postgres_absent;
#[cfg(not(feature = "postgres-wire"))]
use postgres_absent as postgres;
mod query;
mod refusals;
mod rejections;
mod router;
mod routing;
mod serve;
mod slots;
mod sql_cluster;
mod state;
mod tls;
mod triggers;
mod turns;
mod worker;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;

pub use api::ARROW_STREAM;
pub use mcp::stdio as mcp_stdio;
pub use metrics::Metrics;
pub use router::app;
pub use serve::{Bound, ServeOptions, serve};
pub use worker::{WorkOptions, WorkerBound, work};
