//! `/api/v1/reviews`: proposed merges into protected branches (`basin review`). The caller's
//! token names the principal that opens, approves or merges (see `basin_catalog::actor`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use basin_catalog::ReviewState;
use serde::Deserialize;

use super::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct NewReview {
    source: String,
    into: Option<String>,
    title: Option<String>,
}

pub(crate) async fn open(
    State(state): State<AppState>,
    Json(request): Json<NewReview>,
) -> Result<Response, ApiError> {
    let into = request.into.as_deref().unwrap_or(basin_catalog::MAIN);
    let review = state
        .lakehouse
        .reviews()
        .open(&request.source, into, request.title.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(review)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    state: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let filter = q.state.as_deref().map(ReviewState::parse).transpose()?;
    Ok(Json(state.lakehouse.reviews().list(filter).await?).into_response())
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    Ok(Json(state.lakehouse.reviews().show(id).await?).into_response())
}

pub(crate) async fn approve(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    Ok(Json(state.lakehouse.reviews().approve(id).await?).into_response())
}

pub(crate) async fn merge(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    Ok(Json(state.lakehouse.reviews().merge(id).await?).into_response())
}

pub(crate) async fn close(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    Ok(Json(state.lakehouse.reviews().close(id).await?).into_response())
}
