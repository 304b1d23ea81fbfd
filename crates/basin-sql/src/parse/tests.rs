use datafusion::sql::sqlparser::dialect::{
    Dialect as SqlDialect, GenericDialect, PostgreSqlDialect,
};

use super::*;
use crate::guard;

/// Every statement of the SQL corpora (the TPC-H queries, the policy and guard fuzz
/// corpora), as text.
fn corpus() -> Vec<(String, String)> {
    ["policy", "guard"]
        .into_iter()
        .flat_map(basin_fuzz::corpus)
        .filter_map(|(name, bytes)| Some((name, String::from_utf8(bytes).ok()?)))
        .collect()
}

fn limits() -> StatementLimits {
    StatementLimits::default()
}

#[test]
fn the_wrapped_dialects_parse_exactly_as_their_own() {
    let mut compared = 0;
    for (name, sql) in corpus() {
        for dialect in [Dialect::Basin, Dialect::Postgres] {
            let Ok(shape) = guard::check(&sql, dialect, &limits()) else {
                continue;
            };
            let sql = sql.clone();
            // On a large stack: the corpora hold deep statements.
            let same = std::thread::Builder::new()
                .stack_size(crate::DEFAULT_PLANNER_STACK)
                .spawn(move || {
                    let budgeted = Budgeted::new(dialect, budget(&shape, &limits()));
                    let own: &dyn SqlDialect = match dialect {
                        Dialect::Basin => &GenericDialect {},
                        Dialect::Postgres => &PostgreSqlDialect {},
                    };
                    let ours = Parser::new(&budgeted)
                        .try_with_sql(&sql)
                        .and_then(|mut p| p.parse_statements());
                    // Past its budget, the dialect's own parser could take hours.
                    if budgeted.exhausted() {
                        return None;
                    }
                    let theirs = Parser::parse_sql(own, &sql);
                    Some(format!("{theirs:?}") == format!("{ours:?}"))
                })
                .unwrap()
                .join()
                .unwrap();
            match same {
                Some(true) => compared += 1,
                Some(false) => panic!("{name} ({dialect:?}) parses differently when wrapped"),
                None => {}
            }
        }
    }
    assert!(compared > 100, "only {compared} statements compared");
}

#[test]
fn statements_that_parse_once_take_a_few_steps_a_token() {
    let mut worst = 0f64;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/tpch/queries");
    for entry in std::fs::read_dir(dir).unwrap() {
        let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for dialect in [Dialect::Basin, Dialect::Postgres] {
            let shape = guard::check(&sql, dialect, &limits()).unwrap();
            let budgeted = Budgeted::new(dialect, u64::MAX);
            Parser::new(&budgeted)
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_statements())
                .unwrap();
            worst = worst.max(budgeted.steps() as f64 / shape.tokens as f64);
        }
    }
    assert!(worst > 0.0 && worst < 4.0, "{worst} steps a token");
}

#[test]
fn backtracking_past_the_budget_ends_the_parse_with_a_limit_error() {
    // Parsing recurses deeper than a test thread's stack holds in a debug build.
    std::thread::Builder::new()
        .stack_size(crate::DEFAULT_PLANNER_STACK)
        .spawn(backtracking_past_the_budget)
        .unwrap()
        .join()
        .unwrap();
}

fn backtracking_past_the_budget() {
    // Each took tens of seconds to parse in a release build.
    for sql in [
        format!("SELECT {}1 +", "CAST(".repeat(16)),
        format!("SELECT {}1 +", "NOT (".repeat(16)),
        format!("SELECT {}", "CASE WHEN x THEN ".repeat(22)),
        format!("SELECT ({}.)", "t.a".repeat(22)),
    ] {
        for dialect in [Dialect::Basin, Dialect::Postgres] {
            let shape = guard::check(&sql, dialect, &limits()).unwrap();
            let refused = match dialect {
                Dialect::Basin => parse_basin(&sql, &shape, &limits()).map(|_| ()),
                Dialect::Postgres => check_postgres(&sql, &shape, &limits()),
            };
            let e = refused.expect_err(&sql);
            assert_eq!(
                e.kind(),
                ErrorKind::Limit,
                "{sql} ({dialect:?}): {}",
                e.message
            );
        }
    }
    // A statement within its budget that does not parse is a syntax error.
    let shape = guard::check("SELECT (1", Dialect::Basin, &limits()).unwrap();
    let e = parse_basin("SELECT (1", &shape, &limits()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    check_postgres("SELECT (1", &shape, &limits()).unwrap();
}
