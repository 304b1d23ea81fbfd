//! Basin's HTTP API as one table: each endpoint's method, path, role, parameters and
//! handler. The router is built from it and so is the OpenAPI document, so the two cannot
//! disagree. `docs/openapi.json` is that document, committed; a test fails when the table
//! changes and the file does not (`BASIN_UPDATE_OPENAPI=1 cargo test -p basin-server
//! openapi` rewrites it).

use std::collections::BTreeMap;

use axum::Router;
use axum::http::Method;
use basin_service::Role;
use serde_json::{Value, json};

use crate::state::AppState;

mod declared;
mod endpoint;
mod functions;
mod mcp;
mod query;
mod refs;
mod reviews;
mod runs;
mod server;
mod tables;
mod tokens;

pub(crate) use endpoint::Endpoint;

/// Every endpoint of the HTTP API, area by area.
pub(crate) fn endpoints() -> Vec<Endpoint> {
    [
        server::endpoints(),
        refs::endpoints(),
        reviews::endpoints(),
        tables::endpoints(),
        query::endpoints(),
        runs::endpoints(),
        functions::endpoints(),
        tokens::endpoints(),
        declared::endpoints(),
        mcp::endpoints(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The router of [`endpoints`], each route guarded by its role.
pub(crate) fn routes() -> Router<AppState> {
    crate::routing::route_table(
        endpoints()
            .into_iter()
            .map(|e| (e.path, crate::auth::guard(e.role, (e.handler)()))),
    )
}

/// Only `/healthz` and `/metrics`: what a `basin worker` serves.
pub(crate) fn health_routes() -> Router<AppState> {
    crate::routing::route_table(
        endpoints()
            .into_iter()
            .filter(|e| matches!(e.path, "/healthz" | "/metrics"))
            .map(|e| (e.path, crate::auth::guard(e.role, (e.handler)()))),
    )
}

/// The OpenAPI 3.1 document of [`endpoints`].
pub fn document() -> Value {
    let mut paths: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    for e in endpoints() {
        let mut parameters: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(e.query.iter().map(|(name, description)| {
            json!({"name": name, "in": "query", "description": description, "schema": {"type": "string"}})
        }));
        let mut responses = serde_json::Map::new();
        let ok = match (&e.method, e.path) {
            (&Method::POST, "/api/v1/branches" | "/api/v1/namespaces" | "/api/v1/tokens") => "201",
            (&Method::DELETE, "/api/v1/tokens/{id}") => "204",
            _ => "200",
        };
        responses.insert(ok.to_string(), json!({"description": "success"}));
        if e.role.is_some() {
            responses.insert("401".into(), error("no token, or an unknown one"));
            responses.insert("403".into(), error("the token's role is too low"));
        }
        for (status, description) in e.errors {
            responses.insert(status.to_string(), error(description));
        }
        let mut operation = json!({
            "summary": e.summary,
            "parameters": parameters,
            "responses": responses,
            "x-basin-role": e.role.map_or("none", Role::as_str),
        });
        if e.role.is_none() {
            operation["security"] = json!([]);
        }
        if !e.body.is_empty() {
            let properties: serde_json::Map<String, Value> = e
                .body
                .iter()
                .map(|(name, kind, description)| {
                    (
                        name.to_string(),
                        json!({"type": kind, "description": description}),
                    )
                })
                .collect();
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {
                "schema": {"type": "object", "properties": properties, "required": [e.body[0].0]}
            }}});
        }
        paths
            .entry(e.path)
            .or_default()
            .insert(e.method.as_str().to_lowercase(), operation);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Basin HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Basin's operations over HTTP (`basin serve`). The Iceberg REST catalog is \
                served under /v1 as its own specification describes (GET /v1/config lists the endpoints), \
                and the console under /.\n\nNumbers in JSON are exact for every client, including those that read \
                JSON numbers as doubles (JavaScript, jq): a decimal is a string with its scale (`\"10.50\"`, \
                `\"0.00\"`), as Trino and BigQuery send them; a 64-bit integer is a number while its magnitude is \
                at most 2^53-1 (JavaScript's Number.MAX_SAFE_INTEGER) and a string beyond \
                (`\"9007199254740993\"`), so counts stay numbers and nothing is rounded; convert by the \
                column's type (`int(v)`, `BigInt(v)`, `Decimal(v)`), which reads both forms. Snapshot ids \
                (`snapshot_id`, `parent_id`, `current_snapshot_id`) are always strings. The Iceberg REST \
                catalog under /v1 keeps the numbers its specification declares.",
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "an access token from `basin token create --role reader|writer|admin`"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "message": {"type": "string"}, "hint": {"type": ["string", "null"]}, "kind": {"type": "string"}}}}}},
        },
        "paths": paths,
    })
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_openapi_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let now = serde_json::to_string_pretty(&document()).expect("json") + "\n";
        if std::env::var_os("BASIN_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &now).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == now,
            "docs/openapi.json differs from the endpoints in crates/basin-server/src/openapi.rs: \
             run `BASIN_UPDATE_OPENAPI=1 cargo test -p basin-server openapi` and commit the file"
        );
    }
}
