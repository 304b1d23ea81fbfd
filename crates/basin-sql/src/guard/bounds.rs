//! The bounds a statement's text is held to, and the error that refuses it past one.

use basin_core::{Error, ErrorKind, Subject};
use datafusion::sql::sqlparser::tokenizer::Location;

/// The bounds of one statement's text (`[sql]` in basin.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementLimits {
    /// Bytes of SQL one request may send (`[sql] max_statement_size`).
    pub max_size: usize,

    /// How deep the statement's tree may be, estimated from its text, and its plan's
    /// (`[sql] max_expression_depth`).
    pub max_depth: usize,
    /// Joins in one statement (`[sql] max_joins`).
    pub max_joins: usize,
    /// Operators in a statement's plan, each counted as often as it is read once views and
    /// WITH queries are copied out (`[sql] max_plan_nodes`).
    pub max_plan_nodes: usize,
    /// Expressions the parser may start for each token of a statement, where backtracking
    /// would repeat work (`[sql] parse_steps_per_token`).
    pub parse_steps_per_token: u64,
}

impl Default for StatementLimits {
    fn default() -> Self {
        Self {
            max_size: 1 << 20,
            max_depth: 1000,
            max_joins: 100,
            max_plan_nodes: 10_000,
            parse_steps_per_token: 8,
        }
    }
}

/// Which bound a statement broke (for `/metrics`: `basin_limit_hits_total{limit=...}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Size,
    Depth,
    Joins,
}

impl Bound {
    /// The setting, as `/metrics` and messages name it.
    pub fn setting(self) -> &'static str {
        match self {
            Bound::Size => "max_statement_size",
            Bound::Depth => "max_expression_depth",
            Bound::Joins => "max_joins",
        }
    }

    fn limit(self, limits: &StatementLimits) -> String {
        match self {
            Bound::Size => basin_core::units::format_size(limits.max_size as u64),
            Bound::Depth => limits.max_depth.to_string(),
            Bound::Joins => limits.max_joins.to_string(),
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Bound::Size => {
                "send less SQL: a long IN list or VALUES belongs in a table (basin import), or \
                 raise the setting"
            }
            Bound::Depth => {
                "flatten it: `x IN (1, 2, 3)` for a chain of ORs, a table for a long list of \
                 terms, fewer nested parentheses"
            }
            Bound::Joins => {
                "join fewer tables in one statement: build a wide table in a pipeline model and \
                 query that"
            }
        }
    }
}

pub(super) fn refuse(
    bound: Bound,
    limits: &StatementLimits,
    what: String,
    at: Option<Location>,
) -> (Bound, Error) {
    let limit = bound.limit(limits);
    let at = at.map_or(String::new(), |at| {
        format!(" at line {}, column {}", at.line, at.column)
    });
    let message = format!(
        "{what}{at}, past the limit of {limit} (`[sql] {}`)",
        bound.setting()
    );
    (
        bound,
        Error::new(ErrorKind::Limit, message)
            .with_hint(bound.hint())
            .about(match bound {
                Bound::Size => Subject::StatementSize,
                Bound::Depth | Bound::Joins => Subject::StatementShape,
            }),
    )
}
