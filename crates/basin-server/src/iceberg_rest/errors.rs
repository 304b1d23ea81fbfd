//! The Iceberg REST door's errors: the spec's `{"error": {"message", "type", "code"}}`. A
//! Basin error's status and type come from its kind, in one table ([`status_and_type`]); the
//! message carries its hint inline (the spec's body has no field for one).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use basin_core::{Error, ErrorKind};
use serde_json::json;

/// The type of a not-found namespace, and of a not-found table.
pub(super) const NO_NAMESPACE: &str = "NoSuchNamespaceException";
pub(super) const NO_TABLE: &str = "NoSuchTableException";

/// The status and the spec's error type of a Basin error of `kind`; `missing` is the type of
/// a not-found (what the route looks up: [`NO_NAMESPACE`], [`NO_TABLE`], ...).
pub(super) fn status_and_type(
    kind: ErrorKind,
    missing: &'static str,
) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, missing),
        ErrorKind::AlreadyExists => (StatusCode::CONFLICT, "AlreadyExistsException"),
        ErrorKind::Conflict => (StatusCode::CONFLICT, "CommitFailedException"),
        ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "BadRequestException"),
        // The spec's gateway timeout: the work was stopped, its outcome not known to the
        // client (a commit's state unknown).
        ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "ServiceFailureException"),
        // The request was understood but asks for more than a configured limit allows.
        ErrorKind::Limit => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "UnprocessableEntityException",
        ),
        // A protected branch: the spec's 403 for an authenticated caller not allowed this.
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "ForbiddenException"),
        ErrorKind::Store | ErrorKind::Io | ErrorKind::Internal => {
            (StatusCode::INTERNAL_SERVER_ERROR, "ServiceFailureException")
        }
    }
}

/// The type of an error answer axum or the middleware wrote by itself (no Basin error
/// behind it), from its status.
pub(crate) fn rejection_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "NotFoundException",
        s if s.is_server_error() => "ServiceFailureException",
        _ => "BadRequestException",
    }
}

/// The spec's error body: `{"error": {"message", "type", "code"}}`.
pub(crate) struct RestError {
    pub(super) status: StatusCode,
    pub(super) kind: &'static str,
    pub(super) message: String,
}

impl RestError {
    pub(super) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// A Basin error, with `missing` as the type of a not-found (what the route looks up),
    /// as much of it as a remote caller may read ([`crate::errors::for_caller`]).
    pub(super) fn from_basin(missing: &'static str) -> impl FnOnce(Error) -> Self {
        move |e| {
            let (status, kind) = status_and_type(e.kind(), missing);
            let (message, hint) = crate::errors::for_caller(&e);
            Self::new(status, kind, basin_core::inline(&message, hint.as_deref()))
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        rest_body(self.status, self.kind, &self.message)
    }
}

/// `{"error": {"message", "type", "code"}}` with `status`.
pub(crate) fn rest_body(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {
        "message": message,
        "type": kind,
        "code": status.as_u16(),
    }});
    (status, Json(body)).into_response()
}

pub(super) type RestResult<T = Response> = std::result::Result<T, RestError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_answers_the_specs_status_and_type() {
        let table = [
            (ErrorKind::NotFound, 404, NO_TABLE),
            (ErrorKind::AlreadyExists, 409, "AlreadyExistsException"),
            (ErrorKind::Conflict, 409, "CommitFailedException"),
            (ErrorKind::InvalidInput, 400, "BadRequestException"),
            (ErrorKind::Timeout, 504, "ServiceFailureException"),
            (ErrorKind::Limit, 422, "UnprocessableEntityException"),
            (ErrorKind::Forbidden, 403, "ForbiddenException"),
            (ErrorKind::Store, 500, "ServiceFailureException"),
            (ErrorKind::Io, 500, "ServiceFailureException"),
            (ErrorKind::Internal, 500, "ServiceFailureException"),
        ];
        for (kind, status, type_) in table {
            let (s, t) = status_and_type(kind, NO_TABLE);
            assert_eq!((s.as_u16(), t), (status, type_), "{kind:?}");
        }
    }

    #[test]
    fn a_server_failure_is_told_by_its_kind_and_a_hint_rides_inline() {
        let hidden = RestError::from_basin(NO_TABLE)(Error::io("cannot read /secret/path"));
        assert_eq!(hidden.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !hidden.message.contains("/secret/path"),
            "{}",
            hidden.message
        );
        let told = RestError::from_basin(NO_TABLE)(
            Error::not_found("table `a.b` does not exist").with_hint("did you mean `a.c`?"),
        );
        assert_eq!(
            told.message,
            "table `a.b` does not exist (hint: did you mean `a.c`?)"
        );
    }
}
