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

use basin_core::{Error, ErrorKind, Result};
use datafusion::sql::sqlparser::dialect::{
    Dialect as SqlDialect, GenericDialect, PostgreSqlDialect,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

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
            parse_steps_per_token: 8,
        }
    }
}

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

/// What the guard measured of a statement's text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Its tokens (not counting whitespace and comments).
    pub tokens: usize,
    /// How deeply its most nested statement nests (each level, and each part of a dotted
    /// name after the first).
    pub nesting: usize,
    /// The estimated depth of its deepest statement.
    pub depth: usize,
    /// The joins of its statement with the most.
    pub joins: usize,
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

fn refuse(
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
        Error::new(ErrorKind::Limit, message).with_hint(bound.hint()),
    )
}

/// One open level (or the statement's top level).
#[derive(Default)]
struct Level {
    /// Operators in the current item.
    ops: usize,
    /// The deepest level closed inside the current item.
    inner: usize,
    /// The deepest item of this level so far.
    items: usize,
    /// In a `FROM` clause, where a comma joins.
    from: bool,
    /// What closes it.
    closer: Closer,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Closer {
    #[default]
    Statement,
    Paren,
    Bracket,
    Brace,
    End,
}

impl Level {
    fn depth(&self) -> usize {
        self.items.max(self.ops + self.inner)
    }

    fn next_item(&mut self) {
        self.items = self.depth();
        self.ops = 0;
        self.inner = 0;
    }
}

/// The levels open at a point of the text, with what each has measured.
struct Levels {
    open: Vec<Level>,
    /// The operators of the current item of every open level: with the levels themselves,
    /// how deep the innermost item is at least.
    path_ops: usize,
}

impl Levels {
    fn new() -> Self {
        Self {
            open: vec![Level::default()],
            path_ops: 0,
        }
    }

    fn innermost(&mut self) -> &mut Level {
        self.open.last_mut().expect("the top level stays")
    }

    /// Levels open now, the statement's own not counted.
    fn nesting(&self) -> usize {
        self.open.len() - 1
    }

    /// How deep the innermost item is already: it only grows as tokens come, so checking it
    /// as they come finds a statement too deep at the token where it became so.
    fn reached(&self) -> usize {
        self.path_ops + self.nesting() + self.open.last().map_or(0, |l| l.inner)
    }

    fn push(&mut self, closer: Closer) {
        self.open.push(Level {
            closer,
            ..Level::default()
        });
    }

    fn closes(&self, closer: Closer) -> bool {
        self.open.len() > 1 && self.open.last().is_some_and(|l| l.closer == closer)
    }

    /// Closes the innermost level into its parent's current item.
    fn close(&mut self) {
        let level = self.open.pop().expect("an open level");
        self.path_ops -= level.ops;
        let parent = self.innermost();
        parent.inner = parent.inner.max(level.depth() + 1);
    }

    fn operator(&mut self) {
        self.innermost().ops += 1;
        self.path_ops += 1;
    }

    fn comma(&mut self) {
        let level = self.open.last_mut().expect("the top level stays");
        self.path_ops -= level.ops;
        level.next_item();
    }

    /// Closes every level a statement left open and starts the next; returns its depth.
    fn end_statement(&mut self) -> usize {
        while self.open.len() > 1 {
            self.close();
        }
        let depth = self.open[0].depth();
        self.open[0] = Level::default();
        self.path_ops = 0;
        depth
    }
}

fn measure(
    tokens: &[TokenWithSpan],
    limits: &StatementLimits,
) -> std::result::Result<Shape, (Bound, Error)> {
    let mut levels = Levels::new();
    // Periods of the dotted name being read (`a.b.c`): levels of backtracking.
    let mut dots = 0usize;
    let mut joins = 0usize;
    // Whether the last token ended a term: a bracket after one subscripts it, which nests.
    let mut after_term = false;
    // Whether it was a word: a literal after one is typed or introduced by it
    // (`DATE '2024-01-01'`, `INTERVAL '1' DAY`, `_utf8'x'`), which nests.
    let mut after_word = false;
    let mut shape = Shape::default();
    let too_deep = |depth: usize, at: Location| {
        let what = format!(
            "the statement nests at least {depth} deep (each level, and each operator of a \
             chain, counts one)"
        );
        refuse(Bound::Depth, limits, what, Some(at))
    };
    for TokenWithSpan { token, span } in tokens {
        let at = span.start;
        match token {
            Token::Whitespace(_) => continue,
            Token::Period => dots += 1,
            Token::Word(_) => {}
            _ => dots = 0,
        }
        match token {
            Token::LParen => levels.push(Closer::Paren),
            // A period may access a field (of a closed level, a literal, a keyword's value),
            // which nests: each counts, as an operator does.
            Token::Period => levels.operator(),
            Token::LBracket => {
                if after_term {
                    levels.operator();
                }
                levels.push(Closer::Bracket)
            }
            Token::LBrace => levels.push(Closer::Brace),
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::CASE => {
                levels.push(Closer::End)
            }
            // An unbalanced closer is the parser's to refuse.
            Token::RParen if levels.closes(Closer::Paren) => levels.close(),
            Token::RBracket if levels.closes(Closer::Bracket) => levels.close(),
            Token::RBrace if levels.closes(Closer::Brace) => levels.close(),
            Token::Word(w)
                if w.quote_style.is_none()
                    && w.keyword == Keyword::END
                    && levels.closes(Closer::End) =>
            {
                levels.close()
            }
            Token::Comma => {
                levels.comma();
                joins += usize::from(levels.innermost().from);
            }
            Token::SemiColon => {
                // Statements are parsed one after another: each is measured alone.
                let depth = levels.end_statement();
                if depth > limits.max_depth {
                    return Err(too_deep(depth, at));
                }
                shape.depth = shape.depth.max(depth);
                joins = 0;
            }
            Token::Word(w) if w.quote_style.is_none() && CLAUSES.contains(&w.keyword) => {
                levels.innermost().from = w.keyword == Keyword::FROM;
                // A set operation is also an operator.
                if is_operator(token) {
                    levels.operator();
                }
            }
            t if is_operator(t) => {
                levels.operator();
                if matches!(t, Token::Word(w) if w.keyword == Keyword::JOIN) {
                    joins += 1;
                }
            }
            t if after_word && is_literal(t) => levels.operator(),
            _ => {}
        }
        after_word = matches!(token, Token::Word(_));
        after_term = match token {
            Token::Word(w) => w.quote_style.is_some() || !is_operator(token),
            Token::RParen | Token::RBracket | Token::RBrace | Token::Number(..) => true,
            t => {
                !is_operator(t)
                    && !matches!(
                        t,
                        Token::LParen
                            | Token::LBracket
                            | Token::LBrace
                            | Token::Comma
                            | Token::SemiColon
                            | Token::Period
                    )
            }
        };
        let nesting = levels.nesting() + dots;
        shape.nesting = shape.nesting.max(nesting);
        shape.tokens += 1;
        shape.joins = shape.joins.max(joins);
        if joins > limits.max_joins {
            let what = format!("the statement joins {} tables", joins + 1);
            return Err(refuse(Bound::Joins, limits, what, Some(at)));
        }
        let reached = levels.reached();
        if reached > limits.max_depth {
            return Err(too_deep(reached, at));
        }
    }
    let depth = levels.end_statement();
    if depth > limits.max_depth {
        let end = tokens.last().map_or(Location::new(1, 1), |t| t.span.end);
        return Err(too_deep(depth, end));
    }
    shape.depth = shape.depth.max(depth);
    Ok(shape)
}

/// Keywords that start a clause of a query: `FROM` starts the one where commas join.
const CLAUSES: &[Keyword] = &[
    Keyword::SELECT,
    Keyword::FROM,
    Keyword::WHERE,
    Keyword::GROUP,
    Keyword::HAVING,
    Keyword::QUALIFY,
    Keyword::WINDOW,
    Keyword::ORDER,
    Keyword::LIMIT,
    Keyword::OFFSET,
    Keyword::FETCH,
    Keyword::UNION,
    Keyword::INTERSECT,
    Keyword::EXCEPT,
    Keyword::WITH,
    Keyword::VALUES,
];

/// Whether a token is a literal value: a number or a string of any quoting form.
fn is_literal(token: &Token) -> bool {
    !matches!(
        token,
        Token::Word(_) | Token::Whitespace(_) | Token::EOF | Token::Char(_)
    ) && !is_operator(token)
        && !is_punctuation(token)
}

/// Brackets, commas, periods, the statement's end and placeholders: neither terms nor
/// operators.
fn is_punctuation(token: &Token) -> bool {
    matches!(
        token,
        Token::Comma
            | Token::LParen
            | Token::RParen
            | Token::LBracket
            | Token::RBracket
            | Token::LBrace
            | Token::RBrace
            | Token::Period
            | Token::SemiColon
            | Token::Placeholder(_)
    )
}

/// Whether a token joins two terms (or applies to one) in an expression, a query or a join:
/// every symbol but brackets, commas, periods and the statement's end, and the keywords that
/// act as operators.
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(w) => {
            w.quote_style.is_none()
                && matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::NOT
                        | Keyword::IS
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::SIMILAR
                        | Keyword::BETWEEN
                        | Keyword::IN
                        | Keyword::UNION
                        | Keyword::INTERSECT
                        | Keyword::EXCEPT
                        | Keyword::MINUS
                        | Keyword::JOIN
                        | Keyword::COLLATE
                        | Keyword::AT
                        | Keyword::OVERLAPS
                        | Keyword::DIV
                        | Keyword::MOD
                        | Keyword::XOR
                        | Keyword::REGEXP
                        | Keyword::RLIKE
                        | Keyword::ESCAPE
                )
        }
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Whitespace(_) => false,
        other => !is_punctuation(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: StatementLimits = StatementLimits {
        max_size: 1 << 20,
        parse_steps_per_token: 64,
        max_depth: 100,
        max_joins: 10,
    };

    fn bound(sql: &str, dialect: Dialect) -> Option<Bound> {
        check_bound(sql, dialect, &LIMITS).err().map(|(b, _)| b)
    }

    fn parsed_shape(sql: &str, dialect: Dialect) -> Option<(usize, usize)> {
        crate::fuzz::parsed_shape(sql, dialect).expect("the parser does not panic")
    }

    #[test]
    fn a_chain_counts_its_operators_and_a_list_its_deepest_item() {
        let chain = |n: usize, op: &str| format!("SELECT {}", vec!["x"; n].join(op));
        for op in [" + ", " || ", " AND ", " OR ", " = ", "::int, "] {
            let shape = check(&chain(50, op), Dialect::Basin, &LIMITS).unwrap();
            assert!(shape.depth >= 49 || op.contains(','), "{op}: {shape:?}");
        }
        assert_eq!(bound(&chain(101, " + "), Dialect::Basin), None);
        assert_eq!(
            bound(&chain(102, " + "), Dialect::Basin),
            Some(Bound::Depth)
        );
        // A list of any length is as deep as its deepest item.
        let list = format!("SELECT x IN ({})", vec!["1"; 5000].join(", "));
        let wide = StatementLimits::default();
        assert!(check(&list, Dialect::Basin, &wide).unwrap().depth < 5);
        // Unary chains and casts nest too.
        assert_eq!(
            bound(&format!("SELECT {}1", "- ".repeat(101)), Dialect::Postgres),
            Some(Bound::Depth)
        );
        assert_eq!(
            bound(
                &format!("SELECT 1{}", "::int".repeat(101)),
                Dialect::Postgres
            ),
            Some(Bound::Depth)
        );
        // CASE ... END is a level like a parenthesis.
        let cases = |n: usize| {
            format!(
                "SELECT {}1{}",
                "CASE WHEN true THEN ".repeat(n),
                " END".repeat(n)
            )
        };
        assert_eq!(bound(&cases(99), Dialect::Basin), None);
        assert_eq!(bound(&cases(101), Dialect::Basin), Some(Bound::Depth));
    }

    #[test]
    fn the_depth_after_a_deep_level_closes_still_counts_it() {
        // A chain whose first term is a deep chain is as deep as both together.
        let sql = format!("SELECT ({}1) {}", "1 + ".repeat(60), "+ 1 ".repeat(60));
        assert_eq!(bound(&sql, Dialect::Basin), Some(Bound::Depth));
        // ... and statements are measured one by one.
        let two = format!(
            "SELECT {};SELECT {}",
            "1+".repeat(80) + "1",
            "1+".repeat(80) + "1"
        );
        assert_eq!(bound(&two, Dialect::Basin), None);
    }

    #[test]
    fn levels_count_through_every_quoting_form_the_parser_sees() {
        let calls = |n: usize| format!("{}1{}", "abs(".repeat(n), ")".repeat(n));
        // Text that hides a quote character from a scanner that knows only '...' and "...":
        // the parser sees the calls after it, and so does the guard.
        for prefix in [
            "$$'$$",
            "$q$'$q$",
            "E'\\''",
            "'it''s'",
            "U&'\\0041'",
            "/* ' /* ' */ */",
        ] {
            let sql = format!("SELECT {prefix}, {}", calls(9));
            let shape = check(&sql, Dialect::Postgres, &LIMITS).unwrap();
            assert_eq!(shape.nesting, 9, "{sql}");
        }
        // Parentheses inside strings, quoted names and comments are not levels.
        for hidden in [
            "'f(f(f(f(f(f(f(f(f('",
            "$$ f(f(f(f(f(f(f(f(f( $$",
            "-- f(f(f(f(f(f(f(f(f(\n1",
        ] {
            let sql = format!("SELECT {hidden}");
            assert_eq!(
                check(&sql, Dialect::Postgres, &LIMITS).unwrap().nesting,
                0,
                "{sql}"
            );
        }
        // Every kind of level counts: subqueries, lists, arrays, CASEs, calls, and the parts
        // of a dotted name.
        let mixed = "SELECT (SELECT x IN (ARRAY[CASE WHEN abs((t.a.b)) > 0 THEN [1] END]))";
        assert_eq!(check(mixed, Dialect::Basin, &LIMITS).unwrap().nesting, 8);
    }

    #[test]
    fn joins_count_join_and_from_list_commas() {
        let joins = |n: usize| {
            format!(
                "SELECT 1 FROM t0{}",
                (1..=n)
                    .map(|i| format!(" JOIN t{i} ON true"))
                    .collect::<String>()
            )
        };
        assert_eq!(bound(&joins(10), Dialect::Basin), None);
        assert_eq!(bound(&joins(11), Dialect::Basin), Some(Bound::Joins));
        let commas = |n: usize| {
            format!(
                "SELECT a, b, c, d, e, f, g, h, i, j, k FROM {} WHERE x IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11) GROUP BY a, b, c, d, e, f, g, h, i, j, k",
                (0..=n)
                    .map(|i| format!("t{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        assert_eq!(bound(&commas(10), Dialect::Basin), None);
        assert_eq!(bound(&commas(11), Dialect::Basin), Some(Bound::Joins));
    }

    #[test]
    fn a_statement_past_the_size_limit_is_refused_before_it_is_read() {
        let limits = StatementLimits {
            max_size: 1024,
            ..LIMITS
        };
        let sql = format!("SELECT '{}'", "x".repeat(1100));
        let (bound, e) = check_bound(&sql, Dialect::Basin, &limits).unwrap_err();
        assert_eq!(bound, Bound::Size);
        assert_eq!(e.kind(), ErrorKind::Limit);
    }

    #[test]
    fn the_guard_never_underestimates_what_the_parser_builds() {
        // Generated statements mixing the constructs that nest, each form of quoting and
        // comments, in both dialects: what passes the guard parses into a tree no deeper
        // (and with calls nested no deeper than its nesting) than the guard measured.
        let pieces = [
            "1",
            "x",
            "'a(b'",
            "$$)($$",
            "\"q(\"",
            "-- (\n",
            "/* ( /* ) */ */",
            "E'\\')'",
            "abs(",
            "coalesce(",
            "(",
            ")",
            " + ",
            " * ",
            " || ",
            " AND ",
            " OR ",
            " NOT ",
            " - ",
            "::int",
            " IS NULL",
            " BETWEEN 1 AND ",
            "CASE WHEN ",
            " THEN ",
            " END",
            " IN (",
            ", ",
            "[",
            "]",
            " LIKE ",
            "-",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut parsed = 0;
        for _ in 0..3000 {
            let n = (next() % 80) as usize + 1;
            let mut sql = "SELECT ".to_string();
            for _ in 0..n {
                sql.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            for dialect in [Dialect::Basin, Dialect::Postgres] {
                let Ok(shape) = check(&sql, dialect, &LIMITS) else {
                    continue;
                };
                if let Some((depth, calls)) = parsed_shape(&sql, dialect) {
                    parsed += 1;
                    assert!(
                        shape.depth + 1 >= depth,
                        "{sql} ({dialect:?}): {shape:?}, depth {depth}"
                    );
                    assert!(
                        shape.nesting >= calls,
                        "{sql} ({dialect:?}): {shape:?}, calls {calls}"
                    );
                }
            }
        }
        assert!(parsed > 100, "only {parsed} generated statements parsed");
    }
}
