//! The measure of a statement's tokens: how deep the tree they make nests, at most, and how
//! many joins it has; refused at the token where a bound is passed.

use basin_core::Error;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use super::bounds::{Bound, StatementLimits, refuse};
use super::tokens::{is_literal, is_operator};

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

/// Measures a statement's `tokens`: their shape, or the first bound they break and its error.
pub(super) fn measure(
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
