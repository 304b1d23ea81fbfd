//! DataFusion's errors in Basin's words: an unknown table, column or function named with a
//! did-you-mean (and, for a table in another namespace, the way the caller's front door picks
//! one); syntax errors as [`crate::syntax`] words them.

use basin_core::{Error, ErrorKind, Subject, suggest};
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

use crate::provider::{CATALOG, RefCatalog};
use crate::syntax::syntax_error;

/// How the caller of a session picks the namespace unqualified table names resolve in, so
/// that a hint names the way that works where the SQL came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NamespaceOption {
    /// The CLI's `-n NAMESPACE`.
    #[default]
    Flag,
    /// The HTTP API's `"namespace"` field.
    RequestField,
    /// Postgres' `SET search_path`.
    SearchPath,
    /// None: a pipeline's SQL reads the project's namespace.
    Fixed,
}

impl NamespaceOption {
    fn phrase(self, namespace: &str) -> Option<String> {
        match self {
            Self::Flag => Some(format!("`-n {namespace}`")),
            Self::RequestField => Some(format!("`\"namespace\": \"{namespace}\"` in the request")),
            Self::SearchPath => Some(format!("`SET search_path = {namespace}`")),
            Self::Fixed => None,
        }
    }
}

/// DataFusion's error as a Basin error: user mistakes (unknown table or column, bad SQL) are
/// invalid input with a hint; execution failures keep their cause.
pub(crate) fn sql_error(
    e: DataFusionError,
    catalog: &RefCatalog,
    option: NamespaceOption,
) -> Error {
    let root = e.find_root();
    // Basin's own error, raised inside the engine (a scan's missing file): as it was.
    if let DataFusionError::External(inner) = root
        && let Some(basin) = inner.downcast_ref::<Error>()
    {
        let mut same = Error::new(basin.kind(), basin.message.clone());
        same.hint = basin.hint.clone();
        same.shown = basin.shown;
        same.subject = basin.subject;
        return same;
    }
    let message = root
        .to_string()
        .trim_start_matches("Error during planning: ")
        .to_string();
    let lower = message.to_ascii_lowercase();
    let kind = match root {
        DataFusionError::External(_) => ErrorKind::Io,
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ParquetError(_) => ErrorKind::Io,
        DataFusionError::Internal(_) => ErrorKind::Internal,
        DataFusionError::SQL(parse, _) => return syntax_error(parse, None),
        DataFusionError::ResourcesExhausted(message) => {
            return Error::new(
                ErrorKind::Limit,
                format!("the query ran out of memory: {message}"),
            )
            .with_hint(
                "narrow it (a filter, fewer columns, a smaller join), or raise the limit in \
                 basin.toml's [sql] section",
            );
        }
        _ if lower.contains("not found") || lower.contains("no field named") => ErrorKind::NotFound,
        _ => ErrorKind::InvalidInput,
    };
    // DataFusion: "Invalid function 'lenght'.\nDid you mean 'length'?"
    if let Some(rest) = message.strip_prefix("Invalid function '")
        && let Some((name, after)) = rest.split_once('\'')
    {
        let hint = after
            .split_once("Did you mean '")
            .and_then(|(_, s)| s.split_once('\''))
            .map_or_else(
                || "see the SQL reference: https://datafusion.apache.org/user-guide/sql/".into(),
                |(s, _)| format!("did you mean `{s}`?"),
            );
        return Error::not_found(format!("function `{name}` does not exist"))
            .with_hint(hint)
            .about(Subject::Function);
    }
    let missing_table = message
        .split("table '")
        .nth(1)
        .and_then(|s| s.split('\'').next());
    if let Some(missing) = missing_table.filter(|_| kind == ErrorKind::NotFound) {
        let name = missing
            .trim_start_matches(&format!("{CATALOG}."))
            .to_string();
        let tables = catalog.table_names();
        if let Some(found) = same_name_elsewhere(&name, &tables, option) {
            return found;
        }
        let hint = match suggest(&name, tables.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None if tables.is_empty() => {
                "this ref has no tables yet; import one with `basin import`".to_string()
            }
            None => format!("tables: {}", tables.join(", ")),
        };
        return Error::not_found(format!("table `{name}` does not exist")).with_hint(hint);
    }
    if let DataFusionError::SchemaError(inner, _) = root
        && let SchemaError::FieldNotFound {
            field,
            valid_fields,
        } = inner.as_ref()
    {
        let column = field.name();
        let mut valid: Vec<&str> = valid_fields.iter().map(|c| c.name()).collect();
        valid.dedup();
        let hint = match suggest(column, valid.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if valid.is_empty() => "the query reads no table: add FROM NAMESPACE.TABLE, \
                                         or quote a string with '...'"
                .to_string(),
            None => format!("columns: {}", valid.join(", ")),
        };
        return Error::not_found(format!("column `{}` does not exist", field.flat_name()))
            .with_hint(hint)
            .about(Subject::Column);
    }
    Error::new(kind, message)
}

/// `orders` read in the session's namespace (`default.orders`) when the table lives in
/// another one (`sales.orders`): the error names the tables of that name and, where the
/// caller has one, the way to make their namespace the default.
fn same_name_elsewhere(name: &str, tables: &[String], option: NamespaceOption) -> Option<Error> {
    let (namespace, table) = name.split_once('.')?;
    let elsewhere: Vec<&str> = tables
        .iter()
        .map(String::as_str)
        .filter(|t| t.split_once('.').is_some_and(|(_, t)| t == table))
        .collect();
    let hint = match elsewhere.as_slice() {
        [] => return None,
        [one] => {
            let ns = one.split_once('.').map_or("", |(ns, _)| ns);
            match option.phrase(ns) {
                Some(phrase) => format!("did you mean `{one}`, or {phrase}?"),
                None => format!("did you mean `{one}`?"),
            }
        }
        many => {
            let listed = format!("did you mean one of `{}`?", many.join("`, `"));
            match option.phrase("NAMESPACE") {
                Some(phrase) => {
                    format!("{listed} ({phrase} sets where unqualified names are looked up)")
                }
                None => listed,
            }
        }
    };
    Some(
        Error::not_found(format!(
            "table `{table}` does not exist in namespace `{namespace}`"
        ))
        .with_hint(hint),
    )
}
