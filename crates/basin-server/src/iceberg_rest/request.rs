//! What Iceberg REST handlers read from a request: a JSON body and path parameters whose
//! rejections are spec errors, and namespace and table names as Basin's keys.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use basin_catalog::Key;
use serde::{Deserialize, Serialize};

use super::errors::{NO_NAMESPACE, NO_TABLE, RestError, RestResult};
use crate::state::AppState;

/// A JSON request body whose rejection (malformed JSON, a missing field) is a spec error.
pub(super) struct Body<T>(pub(super) T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = RestError;

    async fn from_request(request: Request, state: &AppState) -> RestResult<Self> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                state.metrics.limit_hit("max_body_size");
                let limit = state.limits.max_body_size;
                Err(RestError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "BadRequestException",
                    basin_core::inline(
                        &crate::http::too_large_body(limit),
                        Some(crate::http::BODY_HINT),
                    ),
                ))
            }
            Err(rejection) => Err(RestError::new(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                rejection.body_text(),
            )),
        }
    }
}

/// Path parameters whose rejection (a segment that is not UTF-8 once decoded) is a spec
/// error, like [`Body`]'s.
pub(super) struct RestPath<T>(pub(super) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for RestPath<T> {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> RestResult<Self> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(RestPath(value)),
            Err(rejection) => Err(RestError::new(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                rejection.body_text(),
            )),
        }
    }
}

/// A namespace in a path: its levels joined by the unit separator (0x1F), as `a.b` for Basin.
pub(super) fn namespace_key(path: &str) -> RestResult<Key> {
    Key::parse(&path.split('\u{1f}').collect::<Vec<_>>().join("."))
        .map_err(RestError::from_basin(NO_NAMESPACE))
}

pub(super) fn table_key(namespace: &str, table: &str) -> RestResult<Key> {
    let ns = namespace_key(namespace)?;
    Key::table(&format!("{ns}.{table}")).map_err(RestError::from_basin(NO_TABLE))
}

pub(super) fn levels(key: &Key) -> Vec<&str> {
    key.parts().collect()
}

#[derive(Deserialize, Serialize)]
pub(super) struct TableIdent {
    namespace: Vec<String>,
    name: String,
}

impl TableIdent {
    pub(super) fn of(key: &Key) -> Self {
        Self {
            namespace: key
                .namespace()
                .map(|n| n.parts().map(str::to_string).collect())
                .unwrap_or_default(),
            name: key.name().to_string(),
        }
    }

    pub(super) fn key(&self) -> RestResult<Key> {
        let mut parts = self.namespace.clone();
        parts.push(self.name.clone());
        Key::table(&parts.join(".")).map_err(RestError::from_basin(NO_TABLE))
    }
}
