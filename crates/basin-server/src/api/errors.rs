//! The HTTP API's errors: a Basin error answers with the status its kind maps to
//! ([`status`]) and `{"error": {"message", "hint", "kind"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use basin_core::{Error, ErrorKind};

use crate::errors::for_caller;

/// A Basin error as an HTTP response: the status from its kind, and
/// `{"error": {"message", "hint", "kind"}}`.
pub(crate) struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// The HTTP status of a Basin error of `kind`.
pub(crate) fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Limit => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Store | ErrorKind::Io | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (status(self.0.kind()), Json(error_body(&self.0))).into_response()
    }
}

/// `{"error": {"message", "hint", "kind"}}`, as [`for_caller`] shows it.
pub(crate) fn error_body(e: &Error) -> serde_json::Value {
    let (message, hint) = for_caller(e);
    error_json(&message, hint.as_deref(), e.kind())
}

/// `{"error": {"message", "hint", "kind"}}`.
pub(crate) fn error_json(message: &str, hint: Option<&str>, kind: ErrorKind) -> serde_json::Value {
    serde_json::json!({"error": {
        "message": message,
        "hint": hint,
        "kind": format!("{kind:?}"),
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_answers_its_status() {
        let table = [
            (ErrorKind::NotFound, 404),
            (ErrorKind::AlreadyExists, 409),
            (ErrorKind::Conflict, 409),
            (ErrorKind::InvalidInput, 400),
            (ErrorKind::Timeout, 504),
            (ErrorKind::Limit, 422),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::Store, 500),
            (ErrorKind::Io, 500),
            (ErrorKind::Internal, 500),
        ];
        for (kind, code) in table {
            assert_eq!(status(kind).as_u16(), code, "{kind:?}");
        }
    }
}
