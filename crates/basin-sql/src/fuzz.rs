//! Fuzz targets for the statement guard and the statement policy (see `basin-fuzz`),
//! through both parsers that feed them: DataFusion's (the SQL door, `check`) and
//! sqlparser's Postgres dialect (the Postgres door, `check_sql`).
//!
//! The guard (`guard`): any text is refused by the statement bounds, or its parse within the
//! budget of work ([`crate::parse`]) ends in both dialects within [`PARSE_BUDGET`] on a
//! thread with a planning thread's stack, without a panic, and a statement that parses is a
//! tree no deeper (and with calls nested no deeper than its nesting) than the guard measured.
//!
//! The policy (`policy`):
//! For any text: no panic and no hang, and for every statement that parses
//! - an allowed statement has the shape of a read: its leading keywords are a query's,
//!   `EXPLAIN`, `SHOW`, `DESCRIBE`, a view's `CREATE`/`DROP`, or `SET basin.*` (so `INSERT`,
//!   `COPY`, `CREATE TABLE`, `DROP SCHEMA`, `SET datafusion.*`... are never allowed);
//! - the verdict survives printing the statement and parsing it again;
//! - the two walls agree: a statement the policy allows plans (when it plans at all, with no
//!   tables) to a plan that `check_plan` allows too.

use basin_fuzz::Verdict;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::guard::{Dialect, StatementLimits};
use crate::policy::{check, check_plan, check_sql};

const WORDS: &[&str] = &[
    " ",
    ";",
    "(",
    ")",
    ",",
    "'",
    "\"",
    "--",
    "/*",
    "*/",
    "*",
    "=",
    ".",
    "SELECT",
    "WITH",
    "VALUES",
    "EXPLAIN",
    "ANALYZE",
    "SHOW",
    "DESCRIBE",
    "INSERT INTO",
    "UPDATE",
    "DELETE FROM",
    "MERGE INTO",
    "COPY",
    "TO",
    "CREATE",
    "CREATE EXTERNAL TABLE",
    "TABLE",
    "VIEW",
    "OR REPLACE",
    "MATERIALIZED",
    "TEMPORARY",
    "DROP",
    "SCHEMA",
    "DATABASE",
    "FUNCTION",
    "SET",
    "RESET",
    "LOCAL",
    "basin.ref",
    "datafusion.execution.batch_size",
    "INTO",
    "FROM",
    "AS",
    "UNION ALL",
    "RETURNING",
    "PREPARE",
    "EXECUTE",
    "TRUNCATE",
    "ALTER",
    "GRANT",
    "'/etc/passwd'",
    "STORED AS CSV LOCATION",
    "t",
    "v",
    "1",
    "NULL",
];

#[test]
fn policy_corpus_replays_cleanly() {
    let ctx = SessionContext::new();
    basin_fuzz::replay("policy", |bytes| check_policy(&ctx, bytes));
}

#[test]
#[ignore = "fuzzing: run with scripts/fuzz.sh policy"]
fn policy_mutations() {
    let ctx = SessionContext::new();
    basin_fuzz::run("policy", WORDS, |bytes| check_policy(&ctx, bytes));
}

fn check_policy(ctx: &SessionContext, bytes: &[u8]) -> Verdict {
    // Both doors take text.
    let Ok(sql) = std::str::from_utf8(bytes) else {
        return Ok(());
    };
    // As the doors do: only what the guard lets through is parsed, within its budget.
    let limits = StatementLimits::default();
    let parsed = crate::guard::check(sql, Dialect::Basin, &limits)
        .and_then(|shape| crate::parse::parse_basin(sql, &shape, &limits));
    if let Ok(statements) = parsed {
        for statement in statements {
            let allowed = check(&statement).is_ok();
            let inner = innermost(&statement);
            if let Some(s) = inner {
                shape(s, allowed)?;
            }
            let reparsed = DFParser::parse_sql(&statement.to_string());
            if let Ok(again) = reparsed
                && again.len() == 1
                && check(&again[0]).is_ok() != allowed
            {
                return Err(format!(
                    "`{statement}` is {} but printed and parsed again it is not",
                    verdict(allowed)
                ));
            }
            if allowed {
                let planned = futures::executor::block_on(crate::planners::plan_statement(
                    &ctx.state(),
                    statement.clone(),
                ));
                if let Ok(plan) = planned
                    && let Err(e) = check_plan(&plan)
                {
                    return Err(format!(
                        "`{statement}` passes the policy but its plan does not: {}",
                        e.message
                    ));
                }
            }
        }
    }
    let within = crate::guard::check(sql, Dialect::Postgres, &limits)
        .and_then(|shape| crate::parse::check_postgres(sql, &shape, &limits));
    if within.is_err() {
        return Ok(());
    }
    if let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        for statement in &statements {
            let allowed = check_sql(statement).is_ok();
            shape(statement, allowed)?;
            let reparsed = Parser::parse_sql(&PostgreSqlDialect {}, &statement.to_string());
            if let Ok(again) = reparsed
                && again.len() == 1
                && check_sql(&again[0]).is_ok() != allowed
            {
                return Err(format!(
                    "`{statement}` (Postgres) is {} but printed and parsed again it is not",
                    verdict(allowed)
                ));
            }
        }
    }
    Ok(())
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "refused" }
}

/// The sqlparser statement inside DataFusion's wrappers (`None` for DataFusion's own
/// statements, which the policy refuses by type).
fn innermost(statement: &DfStatement) -> Option<&Statement> {
    match statement {
        DfStatement::Statement(s) => Some(s),
        DfStatement::Explain(e) => innermost(&e.statement),
        _ => None,
    }
}

/// An allowed statement must read like a read.
fn shape(statement: &Statement, allowed: bool) -> Verdict {
    if let Statement::Explain { statement, .. } = statement {
        return shape(statement, allowed);
    }
    let text = statement.to_string().to_ascii_uppercase();
    let words: Vec<&str> = text.split_whitespace().take(6).collect();
    let reads = match words.as_slice() {
        [first, ..] if first.starts_with('(') => true,
        // `EXPLAIN t` (not a statement's EXPLAIN, handled above) describes a table.
        [
            "SELECT" | "WITH" | "VALUES" | "TABLE" | "FROM" | "SHOW" | "DESCRIBE" | "DESC"
            | "EXPLAIN",
            ..,
        ] => true,
        ["DROP", "VIEW", ..] => true,
        ["CREATE", rest @ ..] => rest
            .iter()
            .find(|w| !matches!(**w, "OR" | "REPLACE" | "TEMPORARY" | "TEMP" | "SECURE"))
            .is_some_and(|w| *w == "VIEW"),
        ["SET", "LOCAL" | "SESSION", name, ..] | ["SET", name, ..] => name.starts_with("BASIN."),
        _ => false,
    };
    if allowed && !reads {
        return Err(format!(
            "`{statement}` is allowed but does not read like a read"
        ));
    }
    Ok(())
}

/// How long a statement the guard lets through may take to parse, in a debug build on a
/// slow machine, where sqlparser is unoptimized and a step of its budget takes up to ~15 µs:
/// a 64 KiB input parses within its budget in a few seconds there (a release build is about
/// 15 times faster). What this catches is a parse the budget does not bound: those ran for
/// minutes to hours.
const PARSE_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

const GUARD_WORDS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ";",
    ".",
    "'",
    "\"",
    "$$",
    "$q$",
    "E'",
    "U&'",
    "\\",
    "--",
    "\n",
    "/*",
    "*/",
    "+",
    "-",
    "*",
    "||",
    "::",
    "=",
    "<>",
    "->",
    "->>",
    "#>",
    "abs(",
    "coalesce(",
    "f(",
    "\"f\"(",
    "t.",
    "t.it.",
    "CASE WHEN ",
    " THEN ",
    " END",
    " AND ",
    " OR ",
    " NOT ",
    " IS NULL",
    " IN (",
    " BETWEEN ",
    " LIKE ",
    " UNION ALL ",
    " JOIN t ON true",
    "SELECT ",
    " FROM ",
    " WHERE ",
    "VALUES ",
    "WITH ",
    "1",
    "x",
    "NULL",
];

#[test]
fn guard_corpus_replays_cleanly() {
    basin_fuzz::replay("guard", check_guard);
}

#[test]
#[ignore = "fuzzing: run with scripts/fuzz.sh guard"]
fn guard_mutations() {
    basin_fuzz::run("guard", GUARD_WORDS, check_guard);
}

fn check_guard(bytes: &[u8]) -> Verdict {
    let Ok(sql) = std::str::from_utf8(bytes) else {
        return Ok(());
    };
    for dialect in [Dialect::Basin, Dialect::Postgres] {
        let Ok(shape) = crate::guard::check(sql, dialect, &StatementLimits::default()) else {
            continue;
        };
        let started = std::time::Instant::now();
        let parsed =
            parsed_shape(sql, dialect).map_err(|_| format!("parsing panicked ({dialect:?})"))?;
        let took = started.elapsed();
        if took > PARSE_BUDGET {
            return Err(format!(
                "the guard let through a statement that took {took:?} to parse ({dialect:?}): {shape:?}"
            ));
        }
        if let Some((depth, calls)) = parsed {
            if depth > shape.depth + 1 {
                return Err(format!(
                    "the guard measured depth {} ({dialect:?}); the parser built {depth}",
                    shape.depth
                ));
            }
            if calls > shape.nesting {
                return Err(format!(
                    "the guard measured nesting {} ({dialect:?}); the parser nested calls {calls} deep",
                    shape.nesting
                ));
            }
        }
    }
    Ok(())
}

/// How deep the expressions and the calls of `sql`'s statements nest, if it passes the
/// guard and parses in `dialect` within its budget: parsed (and dropped) on a thread with a
/// planning thread's stack. `Err` when the parser panicked.
pub(crate) fn parsed_shape(
    sql: &str,
    dialect: Dialect,
) -> std::thread::Result<Option<(usize, usize)>> {
    let sql = sql.to_string();
    std::thread::Builder::new()
        .stack_size(crate::DEFAULT_PLANNER_STACK)
        .spawn(move || tree_shape(&sql, dialect))
        .expect("a thread to parse on")
        .join()
}

fn tree_shape(sql: &str, dialect: Dialect) -> Option<(usize, usize)> {
    use datafusion::sql::sqlparser::ast::{Expr, Visit, Visitor};
    use std::ops::ControlFlow;

    #[derive(Default)]
    struct Depths {
        depth: usize,
        deepest: usize,
        calls: usize,
        deepest_calls: usize,
    }
    impl Visitor for Depths {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            self.depth += 1;
            self.deepest = self.deepest.max(self.depth);
            if matches!(expr, Expr::Function(_)) {
                self.calls += 1;
                self.deepest_calls = self.deepest_calls.max(self.calls);
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            self.depth -= 1;
            if matches!(expr, Expr::Function(_)) {
                self.calls -= 1;
            }
            ControlFlow::Continue(())
        }
    }
    // As the doors parse: within the statement's budget of work.
    let shape = crate::guard::check(sql, dialect, &StatementLimits::default()).ok()?;
    let budgeted = crate::parse::Budgeted::new(
        dialect,
        crate::parse::budget(&shape, &StatementLimits::default()),
    );
    let statements = Parser::new(&budgeted)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .ok()?;
    let mut depths = Depths::default();
    let _ = statements.visit(&mut depths);
    Some((depths.deepest, depths.deepest_calls))
}
