//! The lakehouse as code (admins): `basin plan`, `apply` and `export` over `--remote`.

use axum::http::Method;
use axum::routing::{get, post};
use basin_service::Role;

use super::endpoint::Endpoint;
use crate::api;

const BODY: &[(&str, &str, &str)] = &[
    (
        "declaration",
        "string",
        "the declaration: basin.toml's text (no [deploy] folder)",
    ),
    (
        "branch",
        "string",
        "the branch its namespaces and tables are for (default: main)",
    ),
];

pub(super) fn endpoints() -> Vec<Endpoint> {
    let admin = Some(Role::Admin);
    vec![
        Endpoint {
            method: Method::POST,
            path: "/api/v1/declared/plan",
            role: admin,
            summary: "What applying the declaration would change, as `basin plan --format json`: \
                      changes (kind, name, action: create, update, replace or destroy, reasons, \
                      loses, drift) and drift. Changes nothing",
            query: &[],
            body: BODY,
            errors: &[(400, "a declaration that cannot be read, naming its section")],
            handler: || post(api::declared::plan),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/declared/apply",
            role: admin,
            summary: "Plans and applies the declaration, as `basin apply`: namespaces and tables \
                      in one commit, then branches, tags, tokens. The answer is the plan \
                      applied, with the new tokens' secrets (shown this once). Body also: \
                      approved (the changes of the plan the caller approved), allow_replace",
            query: &[],
            body: BODY,
            errors: &[
                (
                    400,
                    "a declaration that cannot be read, or a replace not allowed",
                ),
                (
                    409,
                    "the plan differs from the approved one, or a table changed meanwhile",
                ),
            ],
            handler: || post(api::declared::apply),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/declared/export",
            role: admin,
            summary: "The lakehouse as a declaration (application/toml), as `basin export`",
            query: &[("branch", "whose namespaces and tables (default: main)")],
            body: &[],
            errors: &[(404, "no such branch")],
            handler: || get(api::declared::export),
        },
    ]
}
