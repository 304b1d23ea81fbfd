//! The error type shared by Basin's library crates: a matchable kind, a message that names
//! the ref, table, file or line it is about, an optional `hint:` saying what to do, and the
//! cause. One type for all layers keeps errors from being re-wrapped (and their messages
//! repeated) at every crate boundary.

use std::fmt;

/// What went wrong, as a matchable kind. Tests match kinds, never message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A ref, commit, namespace or table does not exist.
    NotFound,
    /// A ref, namespace or table with that name already exists.
    AlreadyExists,
    /// The change conflicts with one that landed first (same table changed on both sides).
    Conflict,
    /// The request is malformed or not allowed (bad name, writing to a tag, deleting `main`).
    InvalidInput,
    /// The catalog store failed (database). Not the user's fault.
    Store,
    /// Reading or writing files failed (local disk, object store, network).
    Io,
    /// A bug in Basin: an invariant did not hold.
    Internal,
    /// The work ran longer than a configured time limit (a query's timeout).
    Timeout,
    /// The work needed more than a configured limit allows (memory, rows, bytes, size).
    Limit,
    /// The caller may not do this here: a direct write to a protected branch, a merge whose
    /// required checks fail or that lacks its approvals.
    Forbidden,
}

/// What an error is about, where one kind covers several things a door answers differently
/// (the Postgres door's SQLSTATEs: an unknown column is not an unknown table). Set by the
/// code that raises the error ([`Error::about`]), so no door reads an error's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Subject {
    /// Nothing finer than the kind.
    #[default]
    Unspecified,
    /// A column that does not exist.
    Column,
    /// A function that does not exist.
    Function,
    /// A statement the read-only SQL policy refuses (a write, or one reaching files).
    Refused,
    /// A statement longer than `[sql] max_statement_size`.
    StatementSize,
    /// A statement shaped past a bound: `[sql] max_expression_depth`, `max_joins`,
    /// `parse_steps_per_token`.
    StatementShape,
}

/// The catalog's error: a kind, a message naming the ref/table it is about, and a hint.
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// Shown to remote callers even when its kind is the server's own failure (see
    /// [`Error::shown`]).
    pub shown: bool,
    /// What it is about, finer than its kind ([`Subject`]).
    pub subject: Subject,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
            source: None,
            shown: false,
            subject: Subject::Unspecified,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }

    /// A failed read or write of `what` ("cannot read orders.csv"): the cause is named in the
    /// message, for people ("...: No such file or directory"), and kept as the source, for the
    /// logs' cause chain and for callers that look at it.
    pub fn io_with(
        what: impl fmt::Display,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::io(format!("{what}: {cause}")).with_source(cause)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// True when the user can fix the cause (bad input, missing thing, conflict).
    pub fn is_user_error(&self) -> bool {
        !matches!(self.kind, ErrorKind::Store | ErrorKind::Internal)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Marks a failure of the server's own kind (`Io`, `Store`, `Internal`) whose message
    /// callers of the front doors may read, because it tells them what to do (a data file
    /// removed outside Basin, a write that outlived `gc_grace`). Other such failures reach
    /// remote callers as their kind only.
    pub fn shown(mut self) -> Self {
        self.shown = true;
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Says what the error is about, for the doors that answer finer than its kind.
    pub fn about(mut self, subject: Subject) -> Self {
        self.subject = subject;
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message with its hint on a line of its own, as people read it in a terminal and
    /// as the event log keeps it: `message\nhint: what to do`. [`split_hint`] reads it back.
    pub fn with_hint_line(&self) -> String {
        match &self.hint {
            Some(hint) => format!("{}\nhint: {hint}", self.message),
            None => self.message.clone(),
        }
    }

    /// The message and its hint on one line, for wire formats that carry one string:
    /// `message (hint: what to do)`.
    pub fn with_hint_inline(&self) -> String {
        inline(&self.message, self.hint.as_deref())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(feature = "sqlx")]
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::new(ErrorKind::Store, "catalog store failed").with_source(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(ErrorKind::Store, "catalog store holds a malformed record").with_source(e)
    }
}

/// `message (hint: what to do)`, or the message alone: one line for wire formats.
pub fn inline(message: &str, hint: Option<&str>) -> String {
    match hint {
        Some(hint) => format!("{message} (hint: {hint})"),
        None => message.to_string(),
    }
}

/// Reads back what [`Error::with_hint_line`] wrote: the message, and the hint if a line
/// `hint: ...` follows it.
pub fn split_hint(text: &str) -> (&str, Option<&str>) {
    match text.rsplit_once("\nhint: ") {
        Some((message, hint)) => (message, Some(hint)),
        None => (text, None),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The closest candidates to `name`, for "did you mean" hints.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(name.len() / 3) && *c != name)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_written_on_its_own_line_reads_back() {
        let e = Error::invalid("no table `a.b`").with_hint("list tables with `basin table ls`");
        assert_eq!(
            split_hint(&e.with_hint_line()),
            ("no table `a.b`", e.hint.as_deref())
        );
        assert_eq!(split_hint("plain"), ("plain", None));
        assert_eq!(
            e.with_hint_inline(),
            "no table `a.b` (hint: list tables with `basin table ls`)"
        );
    }
}
