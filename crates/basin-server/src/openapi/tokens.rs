//! Access tokens and the audit log (admins).

use axum::http::Method;
use axum::routing::{delete, get, post};
use basin_service::Role;

use super::endpoint::Endpoint;
use crate::api;

pub(super) fn endpoints() -> Vec<Endpoint> {
    let admin = Some(Role::Admin);
    vec![
        Endpoint {
            method: Method::GET,
            path: "/api/v1/audit",
            role: admin,
            summary: "The audit log, newest first: commits, changes to refs, refusals and \
                  requests that change something, with principal, door and outcome",
            query: &[
                ("principal", "only this principal's entries"),
                (
                    "since_ms",
                    "only entries at or after this time (ms since the epoch)",
                ),
                ("limit", "how many (default 100, at most 10000)"),
            ],
            body: &[],
            errors: &[],
            handler: || get(api::audit::list),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/tokens",
            role: admin,
            summary: "Access tokens (never their secrets)",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(api::tokens),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/tokens",
            role: admin,
            summary: "Create a token (201); the secret is in this answer only",
            query: &[],
            body: &[
                ("name", "string", "who or what uses it"),
                ("role", "string", "reader, writer or admin"),
                (
                    "grants",
                    "array",
                    "instead of a role: `access:TABLES[@BRANCHES]` each, e.g. read:sales.*",
                ),
            ],
            errors: &[(
                400,
                "an unknown role, a malformed grant, or both or neither",
            )],
            handler: || post(api::create_token),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/tokens/{id}",
            role: admin,
            summary: "Revoke a token (204)",
            query: &[],
            body: &[],
            errors: &[(404, "no such token")],
            handler: || delete(api::revoke_token),
        },
    ]
}
