//! DataFusion's errors in Basin's words: an unknown table, column or function named with a
//! did-you-mean (and, for a table in another namespace, the way the caller's front door picks
//! one), and syntax errors as Postgres words them, with the line and a caret.

use basin_core::{Error, ErrorKind, suggest};
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

use crate::CATALOG;
use crate::provider::RefCatalog;

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
        return Error::not_found(format!("function `{name}` does not exist")).with_hint(hint);
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
            .with_hint(hint);
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

/// A parser error as Postgres words it (`syntax error at or near "SELEC"`), with the line
/// and a caret under the position when the SQL is at hand, and what the parser expected as
/// the hint.
pub fn syntax_error(
    e: &datafusion::sql::sqlparser::parser::ParserError,
    sql: Option<&str>,
) -> Error {
    let SyntaxError {
        mut message,
        hint,
        position,
    } = SyntaxError::new(e, sql);
    if let (Some(sql), Some((line, column))) = (sql, position)
        && let Some(shown) = sql.lines().nth(line.saturating_sub(1))
    {
        message.push_str(&caret(shown, line, column));
    } else if let Some((line, column)) = position {
        message.push_str(&format!(" (line {line}, column {column})"));
    }
    let error = Error::invalid(message);
    match hint {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

/// A parser error in Postgres' words, in parts (the Postgres door sends the position as a
/// field of its own, and clients draw the caret).
pub struct SyntaxError {
    /// `syntax error at or near "SELEC"`, `syntax error at end of input`.
    pub message: String,
    /// What the parser expected there.
    pub hint: Option<String>,
    /// Line and column, 1-based, in characters.
    pub position: Option<(usize, usize)>,
}

impl SyntaxError {
    /// sqlparser's own words are `Expected: X, found: Y at Line: L, Column: C`.
    pub fn new(e: &datafusion::sql::sqlparser::parser::ParserError, sql: Option<&str>) -> Self {
        use datafusion::sql::sqlparser::parser::ParserError;
        let text = match e {
            ParserError::TokenizerError(s) | ParserError::ParserError(s) => s.as_str(),
            ParserError::RecursionLimitExceeded => {
                return Self {
                    message: "the statement nests too deeply to parse".to_string(),
                    hint: Some(
                        "flatten it: fewer nested parentheses, subqueries or calls".to_string(),
                    ),
                    position: None,
                };
            }
        };
        let (body, position) = match text.rsplit_once(" at Line: ") {
            Some((body, at)) => {
                let position = at.split_once(", Column: ").and_then(|(line, column)| {
                    Some((
                        line.trim().parse::<usize>().ok()?,
                        column.trim().parse::<usize>().ok()?,
                    ))
                });
                (body, position)
            }
            None => (text, None),
        };
        let (message, hint) = match body
            .strip_prefix("Expected: ")
            .and_then(|rest| rest.rsplit_once(", found: "))
        {
            Some((expected, "EOF")) => (
                "syntax error at end of input".to_string(),
                Some(format!("expected {expected}")),
            ),
            Some((expected, found)) => (
                format!("syntax error at or near \"{found}\""),
                Some(format!("expected {expected}")),
            ),
            None => {
                let mut body = body.chars();
                let first = body.next().map(|c| c.to_ascii_lowercase());
                (
                    format!("syntax error: {}{}", first.unwrap_or(' '), body.as_str()),
                    None,
                )
            }
        };
        // The end of input has no position of its own: it is after the last character.
        let position = position.or_else(|| {
            let sql = sql?.trim_end();
            message.ends_with("end of input").then(|| {
                let line = sql.lines().count().max(1);
                let column = sql.lines().last().map_or(0, |l| l.chars().count()) + 1;
                (line, column)
            })
        });
        Self {
            message,
            hint,
            position,
        }
    }

    /// The position as Postgres sends it: a 1-based character index into `sql`.
    pub fn offset(&self, sql: &str) -> Option<usize> {
        let (line, column) = self.position?;
        let before: usize = sql
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(|l| l.chars().count())
            .sum();
        Some(before + column)
    }
}

/// `LINE 2: FROM t WHERE id = = 1` and a caret under `column` (1-based, in characters), as
/// psql shows it; a long line is cut to the part around the column.
fn caret(shown: &str, line: usize, column: usize) -> String {
    const BEFORE: usize = 60;
    const AFTER: usize = 40;
    let chars: Vec<char> = shown.chars().collect();
    let at = column.saturating_sub(1).min(chars.len());
    let start = at.saturating_sub(BEFORE);
    let end = (at + AFTER).min(chars.len());
    let mut text = String::new();
    if start > 0 {
        text.push_str("...");
    }
    text.extend(&chars[start..end]);
    if end < chars.len() {
        text.push_str("...");
    }
    let prefix = format!("LINE {line}: ");
    // Tabs stay tabs so the caret lines up under them.
    let mut pad: String = " ".repeat(prefix.len() + if start > 0 { 3 } else { 0 });
    pad.extend(
        chars[start..at]
            .iter()
            .map(|c| if *c == '\t' { '\t' } else { ' ' }),
    );
    format!("\n{prefix}{text}\n{pad}^")
}
