//! Fuzz target for the statement policy (see `basin-fuzz`), through both parsers that feed
//! it: DataFusion's (the SQL door, `check`) and sqlparser's Postgres dialect (the Postgres
//! door, `check_sql`).
//!
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
    if let Ok(statements) = DFParser::parse_sql(sql) {
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
                let planned = futures::executor::block_on(crate::plan_statement(
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
    // Known: the Postgres dialect's parse time doubles with each level of unclosed
    // brackets (fuzz/crashes/README.md); past this depth it would only find that again.
    if bracket_depth(sql) > KNOWN_SLOW_POSTGRES_DEPTH {
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

const KNOWN_SLOW_POSTGRES_DEPTH: usize = 12;

/// The deepest nesting of `(` in `sql`, counting every one (closed or not).
fn bracket_depth(sql: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0);
    for c in sql.chars() {
        match c {
            '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
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
