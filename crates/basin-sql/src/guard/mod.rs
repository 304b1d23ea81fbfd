//! Bounds on a statement's text, checked before it is parsed, at every SQL door.
//!
//! A parser, and everything after it that walks the statement (dropping, cloning, printing,
//! planning, optimizing, encoding a plan for the cluster), recurses once per level of the
//! tree the text makes: a chain of one operator (`1+1+...+1`) is a tree as deep as the
//! chain is long, and nested calls are as deep as they nest. Unbounded, a reader's 2 KB
//! statement overflows a thread's stack and aborts the server. So the text is measured
//! first, with the dialect's own
//! tokenizer (the one its parser uses), which knows every quoting form of the dialect
//! (`'...'`, `E'...'` with backslash escapes, `$tag$...$tag$`, `"..."`, nested
//! `/* /* */ */` comments): what the guard skips as a string, the parser skips too. The
//! tokenizer is linear and never recurses.
//!
//! What is measured, and refused past its setting:
//! - the size of the text (`[sql] max_statement_size`);
//! - an upper bound of the depth of the tree the parser will build
//!   (`[sql] max_expression_depth`): each open parenthesis, bracket, brace or `CASE` counts
//!   one level, and each operator within one item of a level counts one (a chain's terms
//!   nest under each other); commas separate items, so a list of any length counts as its
//!   deepest item;
//! - how many joins a statement has (`[sql] max_joins`): `JOIN`, and each comma of a `FROM`
//!   list. The optimizer's time grows with the cube of their number.
//!
//! The depth is an over-estimate by design (`a = 1 OR a = 2` counts 3 where the tree is 2
//! deep): it must hold for every form the parser accepts. Trees that the text does not show
//! (views and common table expressions built on each other, rewrites) are measured again
//! after planning ([`crate::depth`]). The parser's time is bounded by the parse itself,
//! which counts its work ([`crate::parse`]): how long sqlparser takes depends on more than
//! the text's shape.

mod bounds;
mod measure;
mod tokens;

use basin_core::{Error, Result};
use datafusion::sql::sqlparser::dialect::{
    Dialect as SqlDialect, GenericDialect, PostgreSqlDialect,
};
use datafusion::sql::sqlparser::tokenizer::Tokenizer;

pub use bounds::{Bound, StatementLimits};
pub use measure::Shape;

use bounds::refuse;
use measure::measure;

/// The dialect a door parses with: its tokenizer is the one measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// DataFusion's own (the HTTP API, the console, `basin query`, SQL models).
    Basin,
    /// The Postgres door's.
    Postgres,
}

impl Dialect {
    pub(crate) fn tokenizer_dialect(self) -> &'static dyn SqlDialect {
        match self {
            Dialect::Basin => &GenericDialect {},
            Dialect::Postgres => &PostgreSqlDialect {},
        }
    }
}

/// Checks `sql` against `limits`, reading it with `dialect`'s tokenizer. Text the tokenizer
/// refuses (an unclosed quote) passes: the parser refuses it the same way, before parsing.
pub fn check(sql: &str, dialect: Dialect, limits: &StatementLimits) -> Result<Shape> {
    check_bound(sql, dialect, limits).map_err(|(_, e)| e)
}

/// [`check`], saying which bound was broken.
pub fn check_bound(
    sql: &str,
    dialect: Dialect,
    limits: &StatementLimits,
) -> std::result::Result<Shape, (Bound, Error)> {
    if sql.len() > limits.max_size {
        let what = format!(
            "the statement is {} long",
            basin_core::units::format_size(sql.len() as u64)
        );
        return Err(refuse(Bound::Size, limits, what, None));
    }
    let mut tokens = Vec::new();
    // On a tokenizer error the tokens before it are measured: the parser refuses the text
    // before parsing any of it.
    let _ = Tokenizer::new(dialect.tokenizer_dialect(), sql)
        .tokenize_with_location_into_buf(&mut tokens);
    measure(&tokens, limits)
}

#[cfg(test)]
mod tests;
