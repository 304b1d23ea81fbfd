//! The server itself: health, metrics, who calls.

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
            path: "/healthz",
            role: None,
            summary: "200 `ok` while the server runs",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(|| async { "ok\n" }),
        },
        Endpoint {
            method: Method::GET,
            path: "/metrics",
            role: reader,
            summary: "Prometheus metrics: requests by route and status, queries, rows, time",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(api::metrics),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/whoami",
            role: reader,
            summary: "The caller: {role, token} (the token's name; null with --no-auth)",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(api::whoami),
        },
    ]
}
