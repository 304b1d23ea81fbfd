//! `/api/v1/declared/*` (admins): `basin plan`, `apply` and `export` over `--remote`. The
//! declaration travels as its TOML text; a `[deploy]` folder cannot (it is on the caller's
//! machine), and is refused by name.

use std::path::Path;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use basin_service::declared::{Change, Declaration};
use serde::Deserialize;

use super::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanRequest {
    /// The declaration: basin.toml's text.
    declaration: String,
    branch: Option<String>,
    /// For apply: the changes of the plan the caller approved; the apply is refused when
    /// the plan made now differs.
    approved: Option<Vec<Change>>,
    #[serde(default)]
    allow_replace: bool,
}

fn declaration(request: &PlanRequest) -> Result<Declaration, ApiError> {
    Ok(Declaration::parse(
        &request.declaration,
        Path::new("basin.toml (sent)"),
        None,
    )?)
}

pub(crate) async fn plan(
    State(state): State<AppState>,
    Json(request): Json<PlanRequest>,
) -> Result<Response, ApiError> {
    let declared = declaration(&request)?;
    let plan = state
        .lakehouse
        .declared()
        .plan(&declared, request.branch.as_deref())
        .await?;
    Ok(Json(plan).into_response())
}

pub(crate) async fn apply(
    State(state): State<AppState>,
    Json(request): Json<PlanRequest>,
) -> Result<Response, ApiError> {
    let declared = declaration(&request)?;
    let plan = state
        .lakehouse
        .declared()
        .apply_approved(
            &declared,
            request.branch.as_deref(),
            request.approved.as_deref(),
            request.allow_replace,
        )
        .await?;
    Ok(Json(plan).into_response())
}

#[derive(Deserialize)]
pub(crate) struct ExportQuery {
    branch: Option<String>,
}

pub(crate) async fn export(
    State(state): State<AppState>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let text = state
        .lakehouse
        .declared()
        .export(q.branch.as_deref())
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        text,
    )
        .into_response())
}
