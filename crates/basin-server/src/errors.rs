//! The rule every door's error table applies before an error reaches a remote caller:
//! a failure on the server's side is told by its kind only (see [`for_caller`]). Each door
//! keeps its own table from `basin_core::ErrorKind` to its wire codes: `api::errors` (HTTP
//! status), `iceberg_rest::errors` (the spec's status and type), `postgres::errors`
//! (SQLSTATE).

use basin_core::{Error, ErrorKind};

/// What a caller may read of `e`. A failure on the server's side (the catalog store, files,
/// a bug) names paths and internals, so the caller reads only its kind and where the details
/// are, and the log gets the whole error (under the request's id on HTTP). Everything else
/// (a bad name, a conflict, a limit, a function's own error) is the caller's to read.
pub(crate) fn for_caller(e: &Error) -> (String, Option<String>) {
    if e.shown
        || !matches!(
            e.kind(),
            ErrorKind::Store | ErrorKind::Io | ErrorKind::Internal
        )
    {
        return (e.message.clone(), e.hint.clone());
    }
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(next) = source {
        cause.push_str(&format!(": {next}"));
        source = next.source();
    }
    tracing::error!(kind = ?e.kind(), "{e}{cause}");
    (
        format!(
            "the server failed on this request ({:?}); its log has the details",
            e.kind()
        ),
        Some(
            "not the request's fault: retry later; the server's operator finds the details in \
             its log (on HTTP, under the answer's `x-request-id`)"
                .to_string(),
        ),
    )
}
