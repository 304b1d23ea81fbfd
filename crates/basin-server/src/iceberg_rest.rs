//! The Iceberg REST catalog protocol (`../shared/specs/rest-catalog-open-api.yaml`) over
//! Basin's versioned catalog, so Spark, Trino, PyIceberg and DuckDB read and write Basin's
//! tables.
//!
//! A client picks a branch with `warehouse` (`warehouse=dev`); `GET /v1/config` answers it
//! as `defaults.prefix`, and every later path carries that prefix. Each change a client
//! commits becomes one catalog commit on that branch (see `basin_table::TableUpdates`).
//! Tags and `REF@COMMIT` work as read-only prefixes.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use basin_catalog::{Content, Error, ErrorKind, Key};
use basin_service::Lakehouse;
use basin_table::TableUpdates;
use basin_table::iceberg::spec::{Schema, SortOrder, TableMetadata, UnboundPartitionSpec};
use basin_table::iceberg::table::Table;
use basin_table::iceberg::{TableRequirement, TableUpdate};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;

/// The routes, as `GET /v1/config` announces them. The list is exact: a route is here iff
/// it is served.
const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/register",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
];

pub(crate) fn routes() -> Router<AppState> {
    let ns = "/v1/{prefix}/namespaces/{namespace}";
    Router::new()
        .route("/v1/config", get(config))
        .route(
            "/v1/{prefix}/namespaces",
            get(list_namespaces).post(create_namespace),
        )
        .route(
            ns,
            get(load_namespace)
                .head(namespace_exists)
                .delete(drop_namespace),
        )
        .route(&format!("{ns}/properties"), post(update_properties))
        .route(&format!("{ns}/tables"), get(list_tables).post(create_table))
        .route(
            &format!("{ns}/tables/{{table}}"),
            get(load_table)
                .head(table_exists)
                .post(commit_table)
                .delete(drop_table),
        )
        .route(&format!("{ns}/register"), post(register_table))
        .route(
            &format!("{ns}/tables/{{table}}/metrics"),
            post(|| async { StatusCode::NO_CONTENT }),
        )
        .route("/v1/{prefix}/tables/rename", post(rename_table))
        .route("/v1/{prefix}/transactions/commit", post(commit_transaction))
}

/// The spec's error body: `{"error": {"message", "type", "code"}}`.
pub(crate) struct RestError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl RestError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// A Basin error, with `missing` as the type of a not-found (what the route looks up).
    fn from_basin(missing: &'static str) -> impl FnOnce(Error) -> Self {
        move |e| {
            let (status, kind) = match e.kind() {
                ErrorKind::NotFound => (StatusCode::NOT_FOUND, missing),
                ErrorKind::AlreadyExists => (StatusCode::CONFLICT, "AlreadyExistsException"),
                ErrorKind::Conflict => (StatusCode::CONFLICT, "CommitFailedException"),
                ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "BadRequestException"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceFailureException"),
            };
            if status.is_server_error() {
                tracing::error!("{e}");
            }
            let message = match &e.hint {
                Some(hint) => format!("{} (hint: {hint})", e.message),
                None => e.message.clone(),
            };
            Self::new(status, kind, message)
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "code": self.status.as_u16(),
        }});
        (self.status, Json(body)).into_response()
    }
}

type RestResult<T = Response> = std::result::Result<T, RestError>;

/// A JSON request body whose rejection (malformed JSON, a missing field) is a spec error.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = RestError;

    async fn from_request(request: Request, state: &S) -> RestResult<Self> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(RestError::new(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                rejection.body_text(),
            )),
        }
    }
}

const NO_NAMESPACE: &str = "NoSuchNamespaceException";
const NO_TABLE: &str = "NoSuchTableException";

/// A namespace in a path: its levels joined by the unit separator (0x1F), as `a.b` for Basin.
fn namespace_key(path: &str) -> RestResult<Key> {
    Key::parse(&path.split('\u{1f}').collect::<Vec<_>>().join("."))
        .map_err(RestError::from_basin(NO_NAMESPACE))
}

fn table_key(namespace: &str, table: &str) -> RestResult<Key> {
    let ns = namespace_key(namespace)?;
    Key::table(&format!("{ns}.{table}")).map_err(RestError::from_basin(NO_TABLE))
}

fn levels(key: &Key) -> Vec<&str> {
    key.parts().collect()
}

#[derive(Deserialize, Serialize)]
struct TableIdent {
    namespace: Vec<String>,
    name: String,
}

impl TableIdent {
    fn of(key: &Key) -> Self {
        Self {
            namespace: key
                .namespace()
                .map(|n| n.parts().map(str::to_string).collect())
                .unwrap_or_default(),
            name: key.name().to_string(),
        }
    }

    fn key(&self) -> RestResult<Key> {
        let mut parts = self.namespace.clone();
        parts.push(self.name.clone());
        Key::table(&parts.join(".")).map_err(RestError::from_basin(NO_TABLE))
    }
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
            RestError::new(
                StatusCode::BAD_REQUEST,
                "NoSuchWarehouseException",
                format!(
                    "warehouse `{warehouse}` is not a branch, tag or commit of this lakehouse: {} \
                     (hint: create the branch with `basin branch create {warehouse}`)",
                    e.message
                ),
            )
        })?;
    let prefix: String = url_escape(&warehouse);
    Ok(Json(json!({
        "defaults": {"prefix": prefix},
        "overrides": {},
        "endpoints": ENDPOINTS,
    })))
}

/// Escapes what cannot stand in one path segment (`/` in `run/42`, `@`, `%`).
fn url_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' | '~' => c.to_string(),
            other => {
                let mut buf = [0u8; 4];
                other
                    .encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct ListQuery {
    parent: Option<String>,
}

async fn list_namespaces(
    State(state): State<AppState>,
    Path(prefix): Path<String>,
    Query(q): Query<ListQuery>,
) -> RestResult<Json<serde_json::Value>> {
    let parent = q.parent.as_deref().map(namespace_key).transpose()?;
    let all = state
        .lakehouse
        .list_namespaces(Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    if let Some(parent) = &parent
        && !all.iter().any(|n| n == parent.as_str())
    {
        return Err(RestError::new(
            StatusCode::NOT_FOUND,
            NO_NAMESPACE,
            format!("namespace `{parent}` does not exist on `{prefix}`"),
        ));
    }
    let namespaces: Vec<Vec<String>> = all
        .iter()
        .filter_map(|n| Key::parse(n).ok())
        .filter(|k| k.namespace() == parent)
        .map(|k| k.parts().map(str::to_string).collect())
        .collect();
    Ok(Json(
        json!({"namespaces": namespaces, "next-page-token": null}),
    ))
}

#[derive(Deserialize)]
struct CreateNamespace {
    namespace: Vec<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

async fn create_namespace(
    State(state): State<AppState>,
    Path(prefix): Path<String>,
    Body(request): Body<CreateNamespace>,
) -> RestResult<Json<serde_json::Value>> {
    let key = namespace_key(&request.namespace.join("\u{1f}"))?;
    state
        .lakehouse
        .create_namespace(key.as_str(), Some(&prefix), request.properties.clone())
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))
        .map_err(|e| match e.status {
            StatusCode::CONFLICT => RestError {
                kind: "AlreadyExistsException",
                ..e
            },
            _ => e,
        })?;
    Ok(Json(
        json!({"namespace": levels(&key), "properties": request.properties}),
    ))
}

async fn load_namespace(
    State(state): State<AppState>,
    Path((prefix, namespace)): Path<(String, String)>,
) -> RestResult<Json<serde_json::Value>> {
    let key = namespace_key(&namespace)?;
    let properties = state
        .lakehouse
        .namespace_properties(key.as_str(), Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    Ok(Json(
        json!({"namespace": levels(&key), "properties": properties}),
    ))
}

async fn namespace_exists(
    State(state): State<AppState>,
    Path((prefix, namespace)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    let _properties = load_namespace(State(state), Path((prefix, namespace))).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn drop_namespace(
    State(state): State<AppState>,
    Path((prefix, namespace)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    let key = namespace_key(&namespace)?;
    state
        .lakehouse
        .drop_namespace(key.as_str(), Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))
        .map_err(|e| match e.status {
            StatusCode::CONFLICT => RestError {
                kind: "NamespaceNotEmptyException",
                ..e
            },
            _ => e,
        })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PropertiesRequest {
    #[serde(default)]
    removals: Vec<String>,
    #[serde(default)]
    updates: BTreeMap<String, String>,
}

async fn update_properties(
    State(state): State<AppState>,
    Path((prefix, namespace)): Path<(String, String)>,
    Body(request): Body<PropertiesRequest>,
) -> RestResult<Json<basin_service::PropertiesUpdate>> {
    let key = namespace_key(&namespace)?;
    let result = state
        .lakehouse
        .update_namespace_properties(
            key.as_str(),
            Some(&prefix),
            request.removals,
            request.updates,
        )
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    Ok(Json(result))
}

async fn list_tables(
    State(state): State<AppState>,
    Path((prefix, namespace)): Path<(String, String)>,
) -> RestResult<Json<serde_json::Value>> {
    let key = namespace_key(&namespace)?;
    state
        .lakehouse
        .namespace_properties(key.as_str(), Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    let identifiers: Vec<TableIdent> = state
        .lakehouse
        .list_tables(Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?
        .iter()
        .filter_map(|t| Key::table(&t.table).ok())
        .filter(|t| t.namespace().as_ref() == Some(&key))
        .map(|t| TableIdent::of(&t))
        .collect();
    Ok(Json(
        json!({"identifiers": identifiers, "next-page-token": null}),
    ))
}

/// A table as the protocol returns it: metadata, its location, and how to read its files.
fn load_result(state: &AppState, table: &Table) -> Json<serde_json::Value> {
    Json(json!({
        "metadata-location": table.metadata_location(),
        "metadata": table.metadata(),
        "config": file_io_config(&state.lakehouse),
    }))
}

/// What a client needs to read and write the warehouse's files itself: nothing for a local
/// folder; the endpoint and credentials Basin uses for an S3-compatible store.
fn file_io_config(lakehouse: &Lakehouse) -> HashMap<&'static str, String> {
    let mut config = HashMap::new();
    if lakehouse.warehouse().is_s3() {
        let s3 = &lakehouse.settings().s3;
        let fields = [
            ("s3.endpoint", &s3.endpoint),
            ("s3.region", &s3.region),
            ("s3.access-key-id", &s3.access_key_id),
            ("s3.secret-access-key", &s3.secret_access_key),
            ("s3.session-token", &s3.session_token),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                config.insert(k, v.clone());
            }
        }
        config.insert("s3.path-style-access", s3.path_style.to_string());
    }
    config
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CreateTable {
    name: String,
    location: Option<String>,
    schema: Schema,
    partition_spec: Option<UnboundPartitionSpec>,
    write_order: Option<SortOrder>,
    #[serde(default)]
    stage_create: bool,
    #[serde(default)]
    properties: HashMap<String, String>,
}

/// Only locations inside the warehouse: a client must not make Basin write (or read)
/// elsewhere on its disk or in its buckets.
fn check_location(lakehouse: &Lakehouse, location: &str) -> RestResult<()> {
    let root = lakehouse.warehouse().location();
    let inside = location
        .strip_prefix(root)
        .is_some_and(|rest| rest.starts_with('/'))
        && !location.split('/').any(|part| part == "..");
    if inside {
        Ok(())
    } else {
        Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            format!("location `{location}` is outside the warehouse {root}"),
        ))
    }
}

async fn create_table(
    State(state): State<AppState>,
    Path((prefix, namespace)): Path<(String, String)>,
    Body(request): Body<CreateTable>,
) -> RestResult<Response> {
    let ns = namespace_key(&namespace)?;
    let key = table_key(&namespace, &request.name)?;
    if let Some(location) = &request.location {
        check_location(&state.lakehouse, location)?;
    }
    let lakehouse = &state.lakehouse;
    lakehouse
        .namespace_properties(ns.as_str(), Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    let at = lakehouse
        .resolve(Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    if lakehouse
        .catalog()
        .content(&at, &key)
        .await
        .map_err(RestError::from_basin(NO_TABLE))?
        .is_some()
    {
        return Err(RestError::new(
            StatusCode::CONFLICT,
            "AlreadyExistsException",
            format!("table `{key}` already exists on `{prefix}`"),
        ));
    }
    let (metadata, changes): (TableMetadata, Vec<TableUpdate>) = lakehouse
        .tables()
        .new_table_metadata(
            &key,
            request.schema,
            request.partition_spec,
            request.write_order,
            request.location,
            request.properties,
        )
        .map_err(RestError::from_basin(NO_TABLE))?;
    if request.stage_create {
        // Nothing is written: the client commits the table with `assert-create`.
        return Ok(Json(json!({
            "metadata": metadata,
            "config": file_io_config(lakehouse),
        }))
        .into_response());
    }
    let tables = lakehouse
        .commit_table_updates(Some(&prefix), &[TableUpdates::create(key, changes)])
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    Ok(load_result(&state, &tables[0]).into_response())
}

async fn load_table(
    State(state): State<AppState>,
    Path((prefix, namespace, table)): Path<(String, String, String)>,
) -> RestResult<Json<serde_json::Value>> {
    let key = table_key(&namespace, &table)?;
    let at = state
        .lakehouse
        .resolve(Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    let table = state
        .lakehouse
        .tables()
        .load(&at, &key)
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    Ok(load_result(&state, &table))
}

async fn table_exists(
    State(state): State<AppState>,
    Path((prefix, namespace, table)): Path<(String, String, String)>,
) -> RestResult<StatusCode> {
    let key = table_key(&namespace, &table)?;
    let at = state
        .lakehouse
        .resolve(Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    match state.lakehouse.catalog().content(&at, &key).await {
        Ok(Some(Content::Table { .. })) => Ok(StatusCode::NO_CONTENT),
        Ok(_) => Ok(StatusCode::NOT_FOUND),
        Err(e) => Err(RestError::from_basin(NO_TABLE)(e)),
    }
}

#[derive(Deserialize)]
struct CommitTable {
    identifier: Option<TableIdent>,
    #[serde(default)]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    updates: Vec<TableUpdate>,
}

impl CommitTable {
    fn into_updates(self, key: Key) -> TableUpdates {
        TableUpdates {
            key,
            requirements: self.requirements,
            updates: self.updates,
        }
    }
}

/// Refuses updates that would point a table outside the warehouse.
fn check_updates(lakehouse: &Lakehouse, updates: &[TableUpdate]) -> RestResult<()> {
    for update in updates {
        if let TableUpdate::SetLocation { location } = update {
            check_location(lakehouse, location)?;
        }
    }
    Ok(())
}

async fn commit_table(
    State(state): State<AppState>,
    Path((prefix, namespace, table)): Path<(String, String, String)>,
    Body(request): Body<CommitTable>,
) -> RestResult<Json<serde_json::Value>> {
    let key = table_key(&namespace, &table)?;
    if let Some(ident) = &request.identifier
        && ident.key()? != key
    {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            format!(
                "the body names `{}` but the path names `{key}`",
                ident.key()?
            ),
        ));
    }
    check_updates(&state.lakehouse, &request.updates)?;
    let tables = state
        .lakehouse
        .commit_table_updates(Some(&prefix), &[request.into_updates(key)])
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    let table = &tables[0];
    Ok(Json(json!({
        "metadata-location": table.metadata_location(),
        "metadata": table.metadata(),
    })))
}

/// Drops the table from the branch. Its files stay (`purgeRequested` is not honoured): the
/// table's history, other branches and tags may still read them.
async fn drop_table(
    State(state): State<AppState>,
    Path((prefix, namespace, table)): Path<(String, String, String)>,
) -> RestResult<StatusCode> {
    let key = table_key(&namespace, &table)?;
    state
        .lakehouse
        .drop_table(key.as_str(), Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegisterTable {
    name: String,
    metadata_location: String,
    #[serde(default)]
    overwrite: bool,
}

async fn register_table(
    State(state): State<AppState>,
    Path((prefix, namespace)): Path<(String, String)>,
    Body(request): Body<RegisterTable>,
) -> RestResult<Json<serde_json::Value>> {
    let key = table_key(&namespace, &request.name)?;
    check_location(&state.lakehouse, &request.metadata_location)?;
    let table = state
        .lakehouse
        .register_table(
            key.as_str(),
            &request.metadata_location,
            Some(&prefix),
            request.overwrite,
        )
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    Ok(load_result(&state, &table))
}

#[derive(Deserialize)]
struct RenameTable {
    source: TableIdent,
    destination: TableIdent,
}

async fn rename_table(
    State(state): State<AppState>,
    Path(prefix): Path<String>,
    Body(request): Body<RenameTable>,
) -> RestResult<StatusCode> {
    let (from, to) = (request.source.key()?, request.destination.key()?);
    state
        .lakehouse
        .rename_table(from.as_str(), to.as_str(), Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Transaction {
    table_changes: Vec<CommitTable>,
}

/// Commits changes to several tables at once: one catalog commit, all or nothing.
async fn commit_transaction(
    State(state): State<AppState>,
    Path(prefix): Path<String>,
    Body(request): Body<Transaction>,
) -> RestResult<StatusCode> {
    let mut changes = Vec::with_capacity(request.table_changes.len());
    for change in request.table_changes {
        let Some(ident) = &change.identifier else {
            return Err(RestError::new(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                "every table change of a transaction needs its `identifier`",
            ));
        };
        let key = ident.key()?;
        check_updates(&state.lakehouse, &change.updates)?;
        changes.push(change.into_updates(key));
    }
    state
        .lakehouse
        .commit_table_updates(Some(&prefix), &changes)
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The route template of an Iceberg REST path, for metrics: literal words stay, names
/// become `{}` (`/v1/{}/namespaces/{}/tables/{}`).
pub(crate) fn route_label(path: &str) -> String {
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
    }

    #[test]
    fn prefixes_escape_what_a_path_segment_cannot_hold() {
        assert_eq!(url_escape("main"), "main");
        assert_eq!(url_escape("run/42"), "run%2F42");
        assert_eq!(url_escape("main@1a2b"), "main%401a2b");
    }
}
