//! Basin's HTTP API as one table: each endpoint's method, path, role, parameters and
//! handler. The router is built from it and so is the OpenAPI document, so the two cannot
//! disagree. `docs/openapi.json` is that document, committed; a test fails when the table
//! changes and the file does not (`BASIN_UPDATE_OPENAPI=1 cargo test -p basin-server
//! openapi` rewrites it).

use std::collections::BTreeMap;

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodRouter, get, post};
use basin_service::Role;
use serde_json::{Value, json};

use crate::state::AppState;
use crate::{api, triggers};

pub(crate) struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    /// The least role that may call it (`None`: anyone, without a token).
    pub role: Option<Role>,
    pub summary: &'static str,
    /// Query parameters: name and meaning.
    pub query: &'static [(&'static str, &'static str)],
    /// The JSON body's fields: name, type and meaning.
    pub body: &'static [(&'static str, &'static str, &'static str)],
    /// Status codes besides 200 and what they mean.
    pub errors: &'static [(u16, &'static str)],
    pub handler: fn() -> MethodRouter<AppState>,
}

const REF: (&str, &str) = ("ref", "branch, tag or REF@COMMIT to read (default: main)");

pub(crate) fn endpoints() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    let writer = Some(Role::Writer);
    let admin = Some(Role::Admin);
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
        Endpoint {
            method: Method::GET,
            path: "/api/v1/refs",
            role: reader,
            summary: "Branches and tags, with their heads",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(api::refs),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/branches",
            role: writer,
            summary: "Create a branch (201)",
            query: &[],
            body: &[
                ("name", "string", "the new branch"),
                ("from", "string", "where it starts (default: main)"),
            ],
            errors: &[(409, "the name is taken"), (404, "`from` does not exist")],
            handler: || post(api::create_branch),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/branches/{name}",
            role: writer,
            summary: "Delete a branch (not `main`); its commits stay reachable from other refs",
            query: &[],
            body: &[],
            errors: &[(404, "no such branch"), (400, "`main` cannot be deleted")],
            handler: || axum::routing::delete(api::delete_branch),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/tags",
            role: writer,
            summary: "Tag a commit (201); a tag never moves",
            query: &[],
            body: &[
                ("name", "string", "the new tag"),
                (
                    "at",
                    "string",
                    "a branch, tag or REF@COMMIT (default: main)",
                ),
            ],
            errors: &[(409, "the name is taken"), (404, "`at` does not exist")],
            handler: || post(api::create_tag),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/tags/{name}",
            role: writer,
            summary: "Delete a tag",
            query: &[],
            body: &[],
            errors: &[(404, "no such tag")],
            handler: || axum::routing::delete(api::delete_tag),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/merge",
            role: writer,
            summary: "Merge a ref into a branch in one commit; appends to one table on both \
                      sides combine, other double changes are a 409 and nothing is written",
            query: &[],
            body: &[
                ("source", "string", "the branch, tag or commit to merge"),
                ("into", "string", "the branch to merge into (default: main)"),
                ("dry_run", "boolean", "only say what would change"),
            ],
            errors: &[(409, "a conflict"), (404, "no such ref")],
            handler: || post(api::merge),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/namespaces",
            role: reader,
            summary: "Namespaces of a ref",
            query: &[REF],
            body: &[],
            errors: &[(404, "no such ref")],
            handler: || get(api::namespaces),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/namespaces",
            role: writer,
            summary: "Create a namespace on a branch (201)",
            query: &[],
            body: &[
                ("name", "string", "e.g. `sales`"),
                ("branch", "string", "default: main"),
                ("properties", "object", "string properties"),
            ],
            errors: &[(409, "it exists")],
            handler: || post(api::create_namespace),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/namespaces/{name}",
            role: writer,
            summary: "Drop an empty namespace from a branch",
            query: &[("branch", "default: main")],
            body: &[],
            errors: &[(404, "no such namespace"), (409, "it still holds tables")],
            handler: || axum::routing::delete(api::drop_namespace),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/tables/{name}/import",
            role: writer,
            summary: "Import the request body (a CSV, JSON, Parquet or Arrow IPC file) into a \
                      table in one commit, creating it if needed",
            query: &[
                ("filename", "the file's name; its suffix gives the format"),
                (
                    "format",
                    "csv, json, parquet or arrow (overrides the suffix)",
                ),
                ("branch", "default: main"),
                ("mode", "`append` (default) or `replace`"),
                (
                    "partition_by",
                    "a new table's partitioning, terms separated by `;`: COL, day(COL), ...",
                ),
                ("delimiter", "CSV field separator (default: `,`)"),
                ("quote", "CSV quote character (default: `\"`)"),
                ("header", "`false` when CSV files have no header line"),
                ("allow_new_columns", "`true` to add columns the table lacks"),
            ],
            body: &[],
            errors: &[
                (
                    400,
                    "a malformed file (named, with the line) or a wrong type",
                ),
                (413, "the file is larger than [server] max_upload_size"),
            ],
            handler: || post(api::import),
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
            ],
            errors: &[(400, "an unknown role")],
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
            handler: || axum::routing::delete(api::revoke_token),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/log",
            role: reader,
            summary: "Commits of a ref, newest first",
            query: &[REF, ("limit", "how many (default 50)")],
            body: &[],
            errors: &[(404, "no such ref")],
            handler: || get(api::log),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/diff",
            role: reader,
            summary: "What changed between two refs, as `basin diff`: per table added, changed \
                      or dropped, with the rows and data files each side added or removed and \
                      its snapshot on each side (a commit's changes: from=@PARENT to=@COMMIT)",
            query: &[
                ("from", "branch, tag or REF@COMMIT to compare from"),
                ("to", "branch, tag or REF@COMMIT to compare to"),
            ],
            body: &[],
            errors: &[(404, "no such ref or commit")],
            handler: || get(api::diff),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/tables",
            role: reader,
            summary: "Tables of a ref and their metadata locations (with columns=true, each \
                      table's columns: id, name, type, required)",
            query: &[
                REF,
                (
                    "columns",
                    "`true` to add each table's columns (reads its metadata)",
                ),
            ],
            body: &[],
            errors: &[(404, "no such ref")],
            handler: || get(api::tables),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/tables/{name}",
            role: reader,
            summary: "One table: columns, partitioning, snapshots, files, rows and bytes",
            query: &[REF],
            body: &[],
            errors: &[(404, "no such table or ref")],
            handler: || get(api::table),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/tables/{name}",
            role: writer,
            summary: "Drop a table from a branch in one commit (other refs keep it)",
            query: &[("branch", "default: main")],
            body: &[],
            errors: &[(404, "no such table")],
            handler: || axum::routing::delete(api::drop_table),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/query",
            role: reader,
            summary: "Run read-only SQL on a ref (queries, EXPLAIN, SHOW, views for the script; \
                      anything else is refused by name). Rows stream as JSON (columns, rows, \
                      row_count, truncated and a notice past [server] json_max_rows or \
                      json_max_bytes, seconds, and error if the query failed after its first \
                      rows), or as an Arrow IPC stream with Accept: \
                      application/vnd.apache.arrow.stream. JSON numbers are exact: decimals are \
                      strings with their scale (\"10.50\"), 64-bit integers are numbers up to \
                      2^53-1 in magnitude and strings beyond; each column's type is in columns. \
                      With format csv or parquet every row comes as a file \
                      (Content-Disposition: attachment)",
            query: &[],
            body: &[
                (
                    "sql",
                    "string",
                    "the statements; the last query's rows are returned",
                ),
                ("ref", "string", "branch, tag or REF@COMMIT (default: main)"),
                (
                    "namespace",
                    "string",
                    "where unqualified table names resolve",
                ),
                (
                    "format",
                    "string",
                    "`json` (default), or every row as a file to download: `csv` (a header \
                     line, decimals with their scale), `parquet` or `arrow` (an IPC stream)",
                ),
            ],
            errors: &[
                (
                    400,
                    "invalid SQL, or a statement the policy refuses (named)",
                ),
                (404, "unknown table, column or ref (with a hint)"),
                (
                    422,
                    "the query needs more memory than [sql] query_memory_limit",
                ),
                (504, "the query ran longer than [sql] query_timeout"),
            ],
            handler: || post(crate::query::query),
        },
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
        Endpoint {
            method: Method::POST,
            path: "/fn/{name}",
            role: writer,
            summary: "Call the deployed @basin.http function NAME (or POST to the path it \
                      declared) with the JSON body as its event. Waits for the handler and \
                      answers its JSON result (or {event, commit} for a function with to=); \
                      with async=1 answers 202 {event, state} at once. The header \
                      Idempotency-Key makes repeated calls one event",
            query: &[(
                "async",
                "`1`: answer 202 with the event's id instead of waiting",
            )],
            body: &[],
            errors: &[
                (
                    202,
                    "queued (async=1): look it up at /api/v1/events/{event}",
                ),
                (400, "the body is not JSON"),
                (404, "no such function"),
                (500, "the function raised: error, hint, event and logs"),
                (
                    504,
                    "the function did not finish in its time limit; it may still",
                ),
            ],
            handler: || post(triggers::call_by_name),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/functions",
            role: reader,
            summary: "Deployed functions, as `basin functions ls`: name, file, source, \
                      declaration, version, deployed_at_ms, trigger (in words) and events (how \
                      many are pending, running, succeeded, failed and dead)",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(triggers::functions),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/events",
            role: reader,
            summary: "Events, newest first, as `basin events ls`: function, state, attempts, \
                      payload, error, logs, result or commit",
            query: &[
                ("state", "pending, running, succeeded, failed or dead"),
                ("function", "only this function's"),
                ("limit", "how many (default 50)"),
            ],
            body: &[],
            errors: &[(400, "an unknown state")],
            handler: || get(triggers::events),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/events/{id}/retry",
            role: writer,
            summary: "Queue a failed or dead event again (by id or a unique prefix), as \
                      `basin events retry`; answers the event, now pending",
            query: &[],
            body: &[],
            errors: &[
                (404, "no such event"),
                (400, "the event is not failed or dead"),
            ],
            handler: || post(triggers::retry_event),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/events/{id}",
            role: reader,
            summary: "One event (by id or a unique prefix): state, attempts, error, logs, \
                      result or commit",
            query: &[],
            body: &[],
            errors: &[(404, "no such event")],
            handler: || get(triggers::event),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/webhooks/s3",
            role: writer,
            summary: "An S3 or MinIO event notification ({Records: [...]}): queues an event for \
                      each created object in a bucket configured in basin.toml ([buckets.NAME] \
                      url) that a deployed function watches. Answers {events, queued}; an \
                      object already queued (by the poller, or an earlier notification) is not \
                      queued again",
            query: &[],
            body: &[("Records", "array", "the notification's records")],
            errors: &[(400, "not an event notification")],
            handler: || post(triggers::s3_webhook),
        },
    ]
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
