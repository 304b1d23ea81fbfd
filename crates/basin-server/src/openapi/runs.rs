//! Function runs, maintenance runs and usage.

use axum::http::Method;
use axum::routing::get;
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
