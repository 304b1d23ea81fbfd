//! Iceberg REST: namespaces (list, create, load, exists, drop when empty, properties).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use basin_catalog::Key;

use super::errors::{NO_NAMESPACE, RestError, RestResult};
use super::request::{Body, RestPath, levels, namespace_key};
use crate::state::AppState;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    parent: Option<String>,
}

pub(super) async fn list_namespaces(
    State(state): State<AppState>,
    RestPath(prefix): RestPath<String>,
    Query(q): Query<ListQuery>,
) -> RestResult<Json<serde_json::Value>> {
    let parent = q.parent.as_deref().map(namespace_key).transpose()?;
    let all = state
        .lakehouse
        .namespaces()
        .list(Some(&prefix))
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
pub(super) struct CreateNamespace {
    namespace: Vec<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

pub(super) async fn create_namespace(
    State(state): State<AppState>,
    RestPath(prefix): RestPath<String>,
    Body(request): Body<CreateNamespace>,
) -> RestResult<Json<serde_json::Value>> {
    let key = namespace_key(&request.namespace.join("\u{1f}"))?;
    state
        .lakehouse
        .namespaces()
        .create(key.as_str(), Some(&prefix), request.properties.clone())
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

pub(super) async fn load_namespace(
    State(state): State<AppState>,
    RestPath((prefix, namespace)): RestPath<(String, String)>,
) -> RestResult<Json<serde_json::Value>> {
    let key = namespace_key(&namespace)?;
    let properties = state
        .lakehouse
        .namespaces()
        .properties(key.as_str(), Some(&prefix))
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    Ok(Json(
        json!({"namespace": levels(&key), "properties": properties}),
    ))
}

pub(super) async fn namespace_exists(
    State(state): State<AppState>,
    RestPath((prefix, namespace)): RestPath<(String, String)>,
) -> RestResult<StatusCode> {
    let _properties = load_namespace(State(state), RestPath((prefix, namespace))).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn drop_namespace(
    State(state): State<AppState>,
    RestPath((prefix, namespace)): RestPath<(String, String)>,
) -> RestResult<StatusCode> {
    let key = namespace_key(&namespace)?;
    state
        .lakehouse
        .namespaces()
        .drop(key.as_str(), Some(&prefix))
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
pub(super) struct PropertiesRequest {
    #[serde(default)]
    removals: Vec<String>,
    #[serde(default)]
    updates: BTreeMap<String, String>,
}

pub(super) async fn update_properties(
    State(state): State<AppState>,
    RestPath((prefix, namespace)): RestPath<(String, String)>,
    Body(request): Body<PropertiesRequest>,
) -> RestResult<Json<basin_service::PropertiesUpdate>> {
    let key = namespace_key(&namespace)?;
    let result = state
        .lakehouse
        .namespaces()
        .update_properties(
            key.as_str(),
            Some(&prefix),
            request.removals,
            request.updates,
        )
        .await
        .map_err(RestError::from_basin(NO_NAMESPACE))?;
    Ok(Json(result))
}
