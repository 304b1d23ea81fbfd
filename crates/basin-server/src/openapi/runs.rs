//! Pipeline runs (and starting one), maintenance runs and usage.

use axum::http::Method;
use axum::routing::{get, post};
use basin_service::Role;

use super::endpoint::Endpoint;
use crate::api;

pub(super) fn endpoints() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    vec![
        Endpoint {
            method: Method::GET,
            path: "/api/v1/runs",
            role: reader,
            summary: "Pipeline runs, newest first",
            query: &[("limit", "how many (default 20)")],
            body: &[],
            errors: &[],
            handler: || get(api::runs),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/runs",
            role: Some(Role::Writer),
            summary: "Run a pipeline project sent in the body, as `basin run` runs a folder \
                  (`basin --remote URL run DIR` sends it), and answer its record once it \
                  ends. It runs as the token, with its grants: the run branch run/ID and the \
                  target need write grants for what the models make",
            query: &[],
            body: &[
                (
                    "files",
                    "object",
                    "the project's .py and .sql files and basin.toml: file name -> text",
                ),
                (
                    "branch",
                    "string",
                    "the branch to publish to (default main)",
                ),
                ("params", "object", "parameter values by name"),
                ("dry_run", "boolean", "run everything, merge nothing"),
                (
                    "no_cache",
                    "boolean",
                    "run every model, reusing no earlier output",
                ),
                (
                    "full_refresh",
                    "boolean",
                    "rebuild incremental models from every row of their inputs",
                ),
                ("keep_branch", "boolean", "keep run/ID after it merges"),
            ],
            errors: &[
                (
                    400,
                    "a file Basin does not read here, or a project in error",
                ),
                (403, "a table or branch the token may not write, or secrets"),
            ],
            handler: || post(api::start_run),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/runs/{id}",
            role: reader,
            summary: "One run (by id or a unique prefix): models with status, time, rows, logs",
            query: &[],
            body: &[],
            errors: &[(404, "no such run")],
            handler: || get(api::run),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/maintenance",
            role: reader,
            summary: "Maintenance runs (compaction, expiry, gc), newest first",
            query: &[("limit", "how many (default 20)")],
            body: &[],
            errors: &[],
            handler: || get(api::maintenance),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/usage",
            role: reader,
            summary: "Invocations and queries, grouped and priced (Lambda for functions, \
                  Athena for queries)",
            query: &[
                ("by", "`function` (default) or `day`"),
                ("since_ms", "only records started at or after (Unix ms)"),
            ],
            body: &[],
            errors: &[(400, "an unknown grouping")],
            handler: || get(api::usage),
        },
    ]
}
