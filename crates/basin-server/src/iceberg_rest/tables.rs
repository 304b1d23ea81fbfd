//! Iceberg REST: tables (list, create and stage-create, load, exists, commit, drop,
//! register, rename) and multi-table transactions.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use basin_catalog::{Content, Key};
use basin_service::Lakehouse;
use basin_table::TableUpdates;
use basin_table::iceberg::spec::{Schema, SortOrder, TableMetadata, UnboundPartitionSpec};
use basin_table::iceberg::table::Table;
use basin_table::iceberg::{TableRequirement, TableUpdate};

use super::errors::{NO_NAMESPACE, NO_TABLE, RestError, RestResult};
use super::request::{Body, RestPath, TableIdent, namespace_key, table_key};
use super::sign;
use crate::state::AppState;

pub(super) async fn list_tables(
    State(state): State<AppState>,
    RestPath((prefix, namespace)): RestPath<(String, String)>,
) -> RestResult<Json<serde_json::Value>> {
    let key = namespace_key(&namespace)?;
    state
        .lakehouse
        .namespaces()
        .properties(key.as_str(), Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    let identifiers: Vec<TableIdent> = state
        .lakehouse
        .tables()
        .list(Some(&prefix))
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

/// A table as the protocol returns it: metadata, its location, and how to read its files
/// (`headers`: the request's, which may ask for remote signing).
fn load_result(state: &AppState, table: &Table, headers: &HeaderMap) -> Json<serde_json::Value> {
    Json(json!({
        "metadata-location": table.metadata_location(),
        "metadata": table.metadata(),
        "config": file_io_config(&state.lakehouse, headers),
    }))
}

/// Where a client finds the warehouse's files: nothing for a local folder; the endpoint,
/// region and URL style of an S3-compatible store. Never credentials: Basin's own keys are
/// long-lived and reach every table, and Basin cannot mint short-lived, scoped ones (STS), so
/// a `vended-credentials` request gets none. A client that asks for `remote-signing` (and a
/// Basin with keys) gets the settings that send its S3 requests to Basin for signing
/// (`sign.rs`); others read with keys of their own (see docs/serving.md), or through Basin's
/// SQL doors.
fn file_io_config(lakehouse: &Lakehouse, headers: &HeaderMap) -> HashMap<&'static str, String> {
    let mut config = HashMap::new();
    if lakehouse.warehouse().is_s3() {
        let s3 = &lakehouse.settings().s3;
        for (k, v) in [("s3.endpoint", &s3.endpoint), ("s3.region", &s3.region)] {
            if let Some(v) = v {
                config.insert(k, v.clone());
            }
        }
        config.insert("s3.path-style-access", s3.path_style.to_string());
        if sign::asks_for_signing(headers) && sign::can_sign(lakehouse) {
            config.extend(sign::signing_config());
        }
    }
    config
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct CreateTable {
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
/// elsewhere on its disk or in its buckets. And a principal with grants of its own names
/// only files of tables it may write (in the folder Basin made for one, `ns/name-UUID`, that
/// a ref still holds it in: `Tables::folder_owner`): a commit or a registration naming
/// another table's files would let it read them through this table. So such a principal
/// leaves a new table's location to Basin.
async fn check_location(lakehouse: &Lakehouse, location: &str) -> RestResult<()> {
    let warehouse = lakehouse.warehouse();
    if !warehouse.contains(location) {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            format!(
                "location `{location}` is outside the warehouse {}",
                warehouse.location()
            ),
        ));
    }
    let Some(grants) = basin_catalog::actor::current().and_then(|actor| actor.grants) else {
        return Ok(());
    };
    let write = basin_catalog::Access::Write;
    if grants.may_touch_files(None, write) {
        return Ok(()); // a grant on every table: whose folder it is does not matter
    }
    let table = lakehouse
        .tables()
        .folder_owner(location)
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    if grants.may_touch_files(table.as_deref(), write) {
        return Ok(());
    }
    let whose = match &table {
        Some(table) => format!("a file of table `{table}`, which this token may not write"),
        None => "not in the folder of a table this token may see (ns/name-UUID)".to_string(),
    };
    Err(RestError::new(
        StatusCode::FORBIDDEN,
        "ForbiddenException",
        format!(
            "location `{location}` is {whose} (hint: leave the location to Basin, or use a \
             token with a write grant on that table)"
        ),
    ))
}

pub(super) async fn create_table(
    State(state): State<AppState>,
    RestPath((prefix, namespace)): RestPath<(String, String)>,
    headers: HeaderMap,
    Body(request): Body<CreateTable>,
) -> RestResult<Response> {
    let ns = namespace_key(&namespace)?;
    let key = table_key(&namespace, &request.name)?;
    check_properties(&state.lakehouse, &request.properties).await?;
    if let Some(location) = &request.location {
        check_location(&state.lakehouse, location).await?;
    }
    let lakehouse = &state.lakehouse;
    lakehouse
        .namespaces()
        .properties(ns.as_str(), Some(&prefix))
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
        .iceberg_tables()
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
            "config": file_io_config(lakehouse, &headers),
        }))
        .into_response());
    }
    let tables = lakehouse
        .tables()
        .commit_updates(Some(&prefix), &[TableUpdates::create(key, changes)])
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    Ok(load_result(&state, &tables[0], &headers).into_response())
}

pub(super) async fn load_table(
    State(state): State<AppState>,
    RestPath((prefix, namespace, table)): RestPath<(String, String, String)>,
    headers: HeaderMap,
) -> RestResult<Json<serde_json::Value>> {
    let key = table_key(&namespace, &table)?;
    let at = state
        .lakehouse
        .resolve(Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    let table = state
        .lakehouse
        .iceberg_tables()
        .load(&at, &key)
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    Ok(load_result(&state, &table, &headers))
}

pub(super) async fn table_exists(
    State(state): State<AppState>,
    RestPath((prefix, namespace, table)): RestPath<(String, String, String)>,
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
pub(super) struct CommitTable {
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

/// Refuses updates that would point a table, or a file it names, outside the warehouse:
/// its location, a new snapshot's manifest list (read when the commit is made durable),
/// statistics files, and the table properties that say where writers put files.
async fn check_updates(lakehouse: &Lakehouse, updates: &[TableUpdate]) -> RestResult<()> {
    for update in updates {
        match update {
            TableUpdate::SetLocation { location } => check_location(lakehouse, location).await?,
            TableUpdate::AddSnapshot { snapshot } => {
                check_location(lakehouse, snapshot.manifest_list()).await?;
            }
            TableUpdate::SetStatistics { statistics } => {
                check_location(lakehouse, &statistics.statistics_path).await?;
            }
            TableUpdate::SetPartitionStatistics {
                partition_statistics,
            } => check_location(lakehouse, &partition_statistics.statistics_path).await?,
            TableUpdate::SetProperties { updates } => check_properties(lakehouse, updates).await?,
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a metadata file to register that names anything outside the warehouse: its
/// table's location, a snapshot's manifest list, statistics files, path properties. (The
/// manifests a manifest list names are not read here; readers and gc read them through the
/// warehouse's own walls.)
async fn check_named_files(
    lakehouse: &Lakehouse,
    metadata: &basin_table::iceberg::spec::TableMetadata,
) -> RestResult<()> {
    check_location(lakehouse, metadata.location()).await?;
    for snapshot in metadata.snapshots() {
        check_location(lakehouse, snapshot.manifest_list()).await?;
    }
    for statistics in metadata.statistics_iter() {
        check_location(lakehouse, &statistics.statistics_path).await?;
    }
    for statistics in metadata.partition_statistics_iter() {
        check_location(lakehouse, &statistics.statistics_path).await?;
    }
    check_properties(lakehouse, metadata.properties()).await
}

/// Table properties that name folders for files (Iceberg's writers follow them; Basin's
/// own writer does not, crates/basin-table/src/locations.rs): inside the warehouse only.
const PATH_PROPERTIES: [&str; 4] = [
    "write.data.path",
    "write.folder-storage.path",
    "write.object-storage.path",
    "write.metadata.path",
];

async fn check_properties(
    lakehouse: &Lakehouse,
    properties: &HashMap<String, String>,
) -> RestResult<()> {
    for name in PATH_PROPERTIES {
        if let Some(location) = properties.get(name) {
            check_location(lakehouse, location).await?;
        }
    }
    Ok(())
}

pub(super) async fn commit_table(
    State(state): State<AppState>,
    RestPath((prefix, namespace, table)): RestPath<(String, String, String)>,
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
    check_updates(&state.lakehouse, &request.updates).await?;
    let tables = state
        .lakehouse
        .tables()
        .commit_updates(Some(&prefix), &[request.into_updates(key)])
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
pub(super) async fn drop_table(
    State(state): State<AppState>,
    RestPath((prefix, namespace, table)): RestPath<(String, String, String)>,
) -> RestResult<StatusCode> {
    let key = table_key(&namespace, &table)?;
    state
        .lakehouse
        .tables()
        .drop(key.as_str(), Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct RegisterTable {
    name: String,
    metadata_location: String,
    #[serde(default)]
    overwrite: bool,
}

pub(super) async fn register_table(
    State(state): State<AppState>,
    RestPath((prefix, namespace)): RestPath<(String, String)>,
    headers: HeaderMap,
    Body(request): Body<RegisterTable>,
) -> RestResult<Json<serde_json::Value>> {
    let key = table_key(&namespace, &request.name)?;
    check_location(&state.lakehouse, &request.metadata_location).await?;
    let named = state
        .lakehouse
        .iceberg_tables()
        .load_from(&key, &request.metadata_location)
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    check_named_files(&state.lakehouse, named.metadata()).await?;
    let table = state
        .lakehouse
        .tables()
        .register(
            key.as_str(),
            &request.metadata_location,
            Some(&prefix),
            request.overwrite,
        )
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    Ok(load_result(&state, &table, &headers))
}

#[derive(Deserialize)]
pub(super) struct RenameTable {
    source: TableIdent,
    destination: TableIdent,
}

pub(super) async fn rename_table(
    State(state): State<AppState>,
    RestPath(prefix): RestPath<String>,
    Body(request): Body<RenameTable>,
) -> RestResult<StatusCode> {
    let (from, to) = (request.source.key()?, request.destination.key()?);
    state
        .lakehouse
        .tables()
        .rename(from.as_str(), to.as_str(), Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Transaction {
    table_changes: Vec<CommitTable>,
}

/// Commits changes to several tables at once: one catalog commit, all or nothing.
pub(super) async fn commit_transaction(
    State(state): State<AppState>,
    RestPath(prefix): RestPath<String>,
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
        check_updates(&state.lakehouse, &change.updates).await?;
        changes.push(change.into_updates(key));
    }
    state
        .lakehouse
        .tables()
        .commit_updates(Some(&prefix), &changes)
        .await
        .map_err(RestError::from_basin(NO_TABLE))?;
    Ok(StatusCode::NO_CONTENT)
}
