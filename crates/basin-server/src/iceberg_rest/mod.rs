//! The Iceberg REST catalog protocol (`../shared/specs/rest-catalog-open-api.yaml`) over
//! Basin's versioned catalog, so Spark, Trino, PyIceberg and DuckDB read and write Basin's
//! tables.
//!
//! A client picks a branch with `warehouse` (`warehouse=dev`); `GET /v1/config` answers it
//! as `defaults.prefix`, and every later path carries that prefix. Each change a client
//! commits becomes one catalog commit on that branch (see `basin_table::TableUpdates`).
//! Tags and `REF@COMMIT` work as read-only prefixes.

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::{MethodRouter, delete, get, head, post};
use axum::{Json, Router};
use basin_core::ErrorKind;
use basin_service::Role;
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;
use errors::{RestError, RestResult};

pub(crate) mod errors;
mod namespaces;
mod request;
mod sign;
mod tables;

/// One route of the protocol and the least role that may call it.
pub(crate) struct RestEndpoint {
    pub method: Method,
    pub path: &'static str,
    pub role: Role,
    pub handler: fn() -> MethodRouter<AppState>,
}

/// Every route served, with its role: reads need a reader, anything that may change the
/// catalog a writer. `GET /v1/config` announces all but itself, so the list is exact.
pub(crate) fn endpoints() -> Vec<RestEndpoint> {
    use Role::{Reader, Writer};
    let e = |method: Method, path, role, handler| RestEndpoint {
        method,
        path,
        role,
        handler,
    };
    vec![
        e(Method::GET, "/v1/config", Reader, || get(config)),
        e(Method::GET, "/v1/{prefix}/namespaces", Reader, || {
            get(namespaces::list_namespaces)
        }),
        e(Method::POST, "/v1/{prefix}/namespaces", Writer, || {
            post(namespaces::create_namespace)
        }),
        e(Method::GET, NAMESPACE, Reader, || {
            get(namespaces::load_namespace)
        }),
        e(Method::HEAD, NAMESPACE, Reader, || {
            head(namespaces::namespace_exists)
        }),
        e(Method::DELETE, NAMESPACE, Writer, || {
            delete(namespaces::drop_namespace)
        }),
        e(
            Method::POST,
            "/v1/{prefix}/namespaces/{namespace}/properties",
            Writer,
            || post(namespaces::update_properties),
        ),
        e(Method::GET, TABLES, Reader, || get(tables::list_tables)),
        e(Method::POST, TABLES, Writer, || post(tables::create_table)),
        e(Method::GET, TABLE, Reader, || get(tables::load_table)),
        e(Method::HEAD, TABLE, Reader, || head(tables::table_exists)),
        e(Method::POST, TABLE, Writer, || post(tables::commit_table)),
        e(Method::DELETE, TABLE, Writer, || delete(tables::drop_table)),
        e(
            Method::POST,
            "/v1/{prefix}/namespaces/{namespace}/register",
            Writer,
            || post(tables::register_table),
        ),
        // Engines report scan metrics after reading; Basin takes and drops them.
        e(
            Method::POST,
            "/v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
            Reader,
            || post(|| async { StatusCode::NO_CONTENT }),
        ),
        e(Method::POST, "/v1/{prefix}/tables/rename", Writer, || {
            post(tables::rename_table)
        }),
        e(
            Method::POST,
            "/v1/{prefix}/transactions/commit",
            Writer,
            || post(tables::commit_transaction),
        ),
        // S3 remote signing: a reader's reads, a writer's writes (the handler checks which).
        e(Method::POST, sign::SIGN, Reader, || post(sign::sign)),
    ]
}

const NAMESPACE: &str = "/v1/{prefix}/namespaces/{namespace}";
const TABLES: &str = "/v1/{prefix}/namespaces/{namespace}/tables";
const TABLE: &str = "/v1/{prefix}/namespaces/{namespace}/tables/{table}";

/// The router of [`endpoints`], each route guarded by its role.
pub(crate) fn routes() -> Router<AppState> {
    crate::routing::route_table(
        endpoints()
            .into_iter()
            .map(|e| (e.path, crate::auth::guard(Some(e.role), (e.handler)()))),
    )
}

#[derive(Deserialize)]
struct ConfigQuery {
    warehouse: Option<String>,
}

/// `GET /v1/config`: the branch (`warehouse`, default `main`) becomes the path prefix.
async fn config(
    State(state): State<AppState>,
    Query(q): Query<ConfigQuery>,
) -> RestResult<Json<serde_json::Value>> {
    let warehouse = q.warehouse.unwrap_or_else(|| "main".to_string());
    state
        .lakehouse
        .resolve(Some(&warehouse))
        .await
        .map_err(|e| {
            if !matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) {
                return RestError::from_basin("NoSuchWarehouseException")(e);
            }
            RestError::new(
                StatusCode::BAD_REQUEST,
                "NoSuchWarehouseException",
                basin_core::inline(
                    &format!(
                        "warehouse `{warehouse}` is not a branch, tag or commit of this \
                         lakehouse: {}",
                        e.message
                    ),
                    Some(&format!(
                        "create the branch with `basin branch create {warehouse}`"
                    )),
                ),
            )
        })?;
    let prefix: String = url_escape(&warehouse);
    Ok(Json(json!({
        "defaults": {"prefix": prefix},
        "overrides": {},
        "endpoints": endpoints()
            .iter()
            .filter(|e| e.path != "/v1/config")
            .map(|e| format!("{} {}", e.method, e.path))
            .collect::<Vec<_>>(),
    })))
}

/// Escapes what cannot stand in one path segment (`/` in `run/42`, `@`, `%`).
fn url_escape(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// The route template of an Iceberg REST path, for metrics: literal words stay, names
/// become `{}` (`/v1/{}/namespaces/{}/tables/{}`); a path no route serves is `other`, so
/// callers cannot make up new labels (each one a series kept for the server's life).
pub(crate) fn route_label(path: &str) -> String {
    static SERVED: std::sync::LazyLock<std::collections::HashSet<String>> =
        std::sync::LazyLock::new(|| {
            endpoints()
                .iter()
                .map(|e| {
                    e.path
                        .split('/')
                        .map(|part| if part.starts_with('{') { "{}" } else { part })
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect()
        });
    if path == sign::SIGN {
        return path.to_string();
    }
    let label = template_of(path);
    if SERVED.contains(&label) {
        label
    } else {
        "other".to_string()
    }
}

fn template_of(path: &str) -> String {
    const WORDS: &[&str] = &[
        "v1",
        "config",
        "namespaces",
        "tables",
        "properties",
        "register",
        "metrics",
        "rename",
        "transactions",
        "commit",
    ];
    path.split('/')
        .enumerate()
        .map(|(i, part)| {
            // Segment 2 is the prefix, 4 a namespace and 6 a table: names, even if they
            // spell a word, but for `/v1/config`, `/tables/rename` and `/transactions/commit`.
            let literal = WORDS.contains(&part)
                && match i {
                    2 => part == "config",
                    4 => part == "rename" || part == "commit",
                    6 => false,
                    _ => true,
                };
            if part.is_empty() || literal {
                part
            } else {
                "{}"
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_keep_words_and_hide_names() {
        assert_eq!(route_label("/v1/config"), "/v1/config");
        assert_eq!(
            route_label("/v1/dev/namespaces/tables/tables/metrics"),
            "/v1/{}/namespaces/{}/tables/{}"
        );
        assert_eq!(
            route_label("/v1/run%2F7/namespaces/a/tables/t/metrics"),
            "/v1/{}/namespaces/{}/tables/{}/metrics"
        );
        assert_eq!(
            route_label("/v1/main/tables/rename"),
            "/v1/{}/tables/rename"
        );
        assert_eq!(route_label("/v1/aws/s3/sign"), "/v1/aws/s3/sign");
        for made_up in [
            "/v1/a/a/a/a/a/a/a/a",
            "/v1/x/namespaces/a/b",
            "/v1/",
            "/v1/x/y",
        ] {
            assert_eq!(route_label(made_up), "other", "{made_up}");
        }
    }

    #[test]
    fn prefixes_escape_what_a_path_segment_cannot_hold() {
        assert_eq!(url_escape("main"), "main");
        assert_eq!(url_escape("run/42"), "run%2F42");
        assert_eq!(url_escape("main@1a2b"), "main%401a2b");
    }
}
