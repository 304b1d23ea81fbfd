//! Namespaces and tables: list, show, create, drop, import a file.

use axum::http::Method;
use axum::routing::{delete, get, post};
use basin_service::Role;

use super::endpoint::{Endpoint, REF};
use crate::api;

pub(super) fn endpoints() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    let writer = Some(Role::Writer);
    let mut all = vec![
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
            handler: || delete(api::drop_namespace),
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
            handler: || delete(api::drop_table),
        },
    ];
    all.push(lineage());
    all
}

/// A table's lineage.
fn lineage() -> Endpoint {
    Endpoint {
        method: Method::GET,
        path: "/api/v1/lineage",
        role: Some(Role::Reader),
        summary: "A table's lineage on a ref, as `basin lineage`: nodes (tables and their \
                  writers: import, function, model, source; id `KIND:NAME`) and edges (a \
                  writer wrote a table, a table was read by a writer), each edge with the \
                  newest commit that made it (commit, at_ms). Tables the caller may not read \
                  are not on it",
        query: &[
            ("table", "NS.TABLE"),
            REF,
            ("depth", "writers deep each way (default 5, at most 20)"),
            (
                "direction",
                "upstream (where its rows came from), downstream (what is built from \
                     it) or both (the default)",
            ),
        ],
        body: &[],
        errors: &[
            (400, "no table, or an unknown direction"),
            (404, "no such table or ref"),
        ],
        handler: || get(api::lineage),
    }
}
