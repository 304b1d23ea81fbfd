//! Parsing within a budget of work.
//!
//! sqlparser backtracks: at a nested call, `CAST`, `NOT (`, `CASE`, dotted name and more,
//! it may parse what follows once, find it is not what it tried, and parse it again another
//! way, so the work on a token can double or triple with each level it is nested in. Found
//! by fuzzing and measured in a release build: 16 levels of `CAST(` left unclosed parsed
//! for 50 s in the Postgres dialect, 16 of `NOT (` for 59 s; 70 tokens inside 13 calls for
//! a third of a second. No shape of text bounds that for every construct, and a parse
//! cannot be interrupted from outside. So the parse counts its own work instead: the
//! dialect it parses with is the door's own, wrapped ([`Budgeted`]) to count every
//! expression the parser starts (sqlparser asks the dialect first, at each one), and to
//! fail the parse once the count passes a budget proportional to the statement's tokens
//! (`[sql] parse_steps_per_token`, 8). The failure is the parser's `RecursionLimitExceeded`,
//! which sqlparser's backtracking passes on instead of trying another way, so a statement
//! over its budget ends at once. Statements that parse without backtracking take a step or
//! two per token; the budget is far above that.
//!
//! The wrapper forwards every other method of sqlparser's `Dialect` to the dialect it
//! wraps, `dialect()` included (which `dialect_of!` checks), so the parser behaves exactly
//! as with that dialect (tested over the SQL corpora).

mod budgeted;

use std::collections::VecDeque;

use basin_core::{Error, ErrorKind, Result, Subject};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::parser::Parser;

pub(crate) use budgeted::Budgeted;

use crate::guard::{Dialect, Shape, StatementLimits};
use crate::syntax::syntax_error;

/// The budget of a statement of `shape`: `[sql] parse_steps_per_token` for each of its
/// tokens, and for a short one as many as for 2,048 tokens (room for the legitimately
/// nested: the Postgres dialect parses 14 nested calls in 16,384 steps, each level doubling
/// them even when the statement is valid).
pub(crate) fn budget(shape: &Shape, limits: &StatementLimits) -> u64 {
    limits
        .parse_steps_per_token
        .saturating_mul(shape.tokens.max(2048) as u64)
}

/// The error of a parse stopped by its budget.
fn over_budget(budgeted: &Budgeted, shape: &Shape, limits: &StatementLimits) -> Error {
    Error::new(
        ErrorKind::Limit,
        format!(
            "parsing the statement took more than its budget of {} steps (`[sql] \
             parse_steps_per_token`: {} for each of its {} tokens, at least 2048 tokens' \
             worth): the parser tried its nested calls, casts, CASEs or subqueries again and \
             again",
            budgeted.budget(),
            limits.parse_steps_per_token,
            shape.tokens
        ),
    )
    .with_hint(
        "nest less: compute inner results in a common table expression (WITH) or a view and \
         use its columns; check the statement for an unclosed parenthesis or CASE",
    )
    .about(Subject::StatementShape)
}

/// Parses `sql` (already checked by the guard, which measured `shape`) with DataFusion's
/// parser in Basin's dialect, within its budget.
pub(crate) fn parse_basin(
    sql: &str,
    shape: &Shape,
    limits: &StatementLimits,
) -> Result<VecDeque<DfStatement>> {
    let dialect = Budgeted::new(Dialect::Basin, budget(shape, limits));
    let parsed = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut parser| parser.parse_statements());
    match parsed {
        Ok(statements) => Ok(statements),
        Err(_) if dialect.exhausted() => Err(over_budget(&dialect, shape, limits)),
        // The parser's error, under the diagnostics DataFusion may wrap it in.
        Err(e) => Err(match e.find_root() {
            datafusion::error::DataFusionError::SQL(parse, _) => syntax_error(parse, Some(sql)),
            other => Error::invalid(other.to_string()),
        }),
    }
}

/// Parses `sql` in the Postgres dialect within its budget, only to find whether the
/// parser's work stays within it; `Err` only when it does not (a syntax error is the door's
/// own parser's to report).
pub fn check_postgres(sql: &str, shape: &Shape, limits: &StatementLimits) -> Result<()> {
    let dialect = Budgeted::new(Dialect::Postgres, budget(shape, limits));
    let parsed = Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements());
    match parsed {
        Err(_) if dialect.exhausted() => Err(over_budget(&dialect, shape, limits)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
