//! The Postgres door's errors: a Basin error as an `ErrorResponse` with a SQLSTATE from its
//! kind and subject ([`sqlstate`]; never from its words), and its hint in the protocol's own
//! hint field.

use basin_core::{Error, ErrorKind, Subject};
use datafusion_postgres::pgwire;
use pgwire::error::{ErrorInfo, PgWireError};

/// The SQLSTATE of a Basin error: by its kind, and where one kind covers several of
/// Postgres' codes, by what the error is about (its [`Subject`], set where it was raised).
pub(super) fn sqlstate(e: &Error) -> &'static str {
    match (e.kind(), e.subject) {
        (ErrorKind::NotFound, Subject::Column) => "42703", // undefined_column
        (ErrorKind::NotFound, Subject::Function) => "42883", // undefined_function
        (ErrorKind::NotFound, _) => "42P01",               // undefined_table
        // The statement policy: a write, or anything reaching files.
        (ErrorKind::InvalidInput, Subject::Refused) => "25006", // read_only_sql_transaction
        (ErrorKind::InvalidInput, _) => "42601",                // syntax_error
        (ErrorKind::AlreadyExists | ErrorKind::Conflict, _) => "40001", // serialization_failure
        (ErrorKind::Timeout, _) => "57014",                     // query_canceled
        (ErrorKind::Limit, Subject::StatementSize) => "54000",  // program_limit_exceeded
        (ErrorKind::Limit, Subject::StatementShape) => "54001", // statement_too_complex
        (ErrorKind::Limit, _) => "53200",                       // out_of_memory
        (ErrorKind::Forbidden, _) => "42501",                   // insufficient_privilege
        (ErrorKind::Store | ErrorKind::Io | ErrorKind::Internal, _) => "XX000", // internal_error
    }
}

/// An error of the door's own (not a Basin error), with its SQLSTATE.
pub(super) fn pg_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// A Basin error as a Postgres error: a SQLSTATE from its kind, and its hint.
pub(super) fn basin_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e, "ERROR")))
}

/// A Basin error as a Postgres error of `severity` (`ERROR`, or `FATAL` to end the
/// connection), as much of it as a remote caller may read ([`crate::errors::for_caller`]).
pub(super) fn error_info(e: Error, severity: &str) -> ErrorInfo {
    let (message, hint) = crate::errors::for_caller(&e);
    let mut info = ErrorInfo::new(severity.into(), sqlstate(&e).into(), message);
    info.hint = hint;
    info
}

/// What a statement stopped by a cancel request fails with, as Postgres words it.
pub(super) fn cancelled_by_user() -> PgWireError {
    pg_error("57014", "canceling statement due to user request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_answers_its_sqlstate() {
        let limit = |subject| Error::new(ErrorKind::Limit, "x").about(subject);
        let table = [
            (Error::not_found("table `a.b` does not exist"), "42P01"),
            (Error::not_found("x").about(Subject::Column), "42703"),
            (Error::not_found("x").about(Subject::Function), "42883"),
            (Error::invalid("syntax error at or near \"SELEC\""), "42601"),
            (Error::invalid("x").about(Subject::Refused), "25006"),
            (Error::new(ErrorKind::Conflict, "x"), "40001"),
            (Error::new(ErrorKind::AlreadyExists, "x"), "40001"),
            (Error::new(ErrorKind::Timeout, "x"), "57014"),
            (Error::new(ErrorKind::Forbidden, "x"), "42501"),
            (limit(Subject::StatementSize), "54000"),
            (limit(Subject::StatementShape), "54001"),
            (
                Error::new(ErrorKind::Limit, "the query ran out of memory"),
                "53200",
            ),
            // Words alone pick nothing: a message naming a setting is still out of memory.
            (
                Error::new(ErrorKind::Limit, "over (`[sql] max_statement_size`)"),
                "53200",
            ),
            (Error::not_found("column `x` does not exist"), "42P01"),
            (Error::io("x"), "XX000"),
            (Error::new(ErrorKind::Store, "x"), "XX000"),
            (Error::internal("x"), "XX000"),
        ];
        for (e, code) in table {
            assert_eq!(sqlstate(&e), code, "{:?}: {}", e.kind(), e.message);
        }
    }
}
