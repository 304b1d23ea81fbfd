//! Syntax errors as Postgres words them (`syntax error at or near "SELEC"`), with the line
//! and a caret under the position.

use basin_core::Error;
use datafusion::sql::sqlparser::parser::ParserError;

/// A parser error as Postgres words it (`syntax error at or near "SELEC"`), with the line
/// and a caret under the position when the SQL is at hand, and what the parser expected as
/// the hint.
pub fn syntax_error(e: &ParserError, sql: Option<&str>) -> Error {
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
    pub fn new(e: &ParserError, sql: Option<&str>) -> Self {
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
