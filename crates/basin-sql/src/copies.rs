//! How big a statement's plan will be once its WITH queries are copied into each place that
//! reads them, estimated from its parsed text, and refused past `[sql] max_plan_nodes`
//! before DataFusion plans it.
//!
//! A WITH query read twice is planned once and copied into both readers, and DataFusion's
//! own planning of the statement already takes time in proportion to the copies: ten levels
//! of `tN AS (SELECT x FROM tN-1 UNION ALL SELECT x FROM tN-1)` are a thousand copies, and
//! sixteen levels took 1.4 s to turn into a plan in a debug build (then 32 s to optimize),
//! each two more four times as long, from a few hundred bytes of SQL. So the count cannot
//! wait for the plan ([`crate::depth`] measures that, views included): it is made here, on
//! the parsed statement, a query and each table it reads counting one, a WITH query's name
//! counting what that query counts. That is below what the plan will count, so whatever
//! passes here is measured again, exactly, once planned (views included, which count one
//! here). A WITH query that counts past the bound itself is refused even when nothing reads
//! it: DataFusion plans it all the same.

use std::ops::ControlFlow;

use basin_core::{Error, ErrorKind, Subject};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{self, ObjectName, Query, Visit, Visitor};

/// The queries and tables `statement` reads, WITH queries counted where they are read;
/// counting stops past `limit`.
pub(crate) fn count(statement: &Statement, limit: u64) -> u64 {
    let mut counter = Counter {
        limit,
        ..Counter::default()
    };
    match statement {
        Statement::Statement(inner) => {
            let _ = inner.visit(&mut counter);
        }
        Statement::Explain(explain) => return count(&explain.statement, limit),
        _ => return 0,
    }
    counter.total
}

/// Refuses a statement whose plan would hold more than `limit` queries and tables.
pub(crate) fn check(statement: &Statement, limit: usize) -> Result<(), Error> {
    let counted = count(statement, limit as u64);
    if counted <= limit as u64 {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Limit,
        format!(
            "the query reads more than {limit} queries and tables once its WITH queries are \
             copied into each place that reads them (`[sql] max_plan_nodes` = {limit})"
        ),
    )
    .with_hint(
        "a WITH query read several times, built on others read several times, multiplies: \
         materialize a step as a table (a pipeline model), or read each once",
    )
    .about(Subject::StatementShape))
}

#[derive(Default)]
struct Counter {
    limit: u64,
    /// WITH queries in scope, by name, and what each counts; the latest of a name wins.
    named: Vec<(String, u64)>,
    /// The queries being visited, innermost last.
    open: Vec<Open>,
    /// What the statement counts.
    total: u64,
}

struct Open {
    /// Where `named` stood when the query began: its own WITH queries go out of scope with it.
    scope: usize,
    /// Its WITH queries' names not yet visited: the next queries visited directly inside it
    /// are their bodies, in order.
    pending: std::collections::VecDeque<String>,
    counted: u64,
}

impl Counter {
    fn add(&mut self, n: u64) -> ControlFlow<()> {
        let counted = match self.open.last_mut() {
            Some(open) => &mut open.counted,
            None => &mut self.total,
        };
        *counted = counted.saturating_add(n);
        if *counted > self.limit {
            self.total = *counted;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

impl Visitor for Counter {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let pending = query
            .with
            .iter()
            .flat_map(|with| &with.cte_tables)
            .map(|cte| cte.alias.name.value.to_lowercase())
            .collect();
        self.open.push(Open {
            scope: self.named.len(),
            pending,
            counted: 1,
        });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        let Some(done) = self.open.pop() else {
            return ControlFlow::Continue(());
        };
        self.named.truncate(done.scope);
        let defines = self
            .open
            .last_mut()
            .and_then(|outer| outer.pending.pop_front());
        match defines {
            // A WITH query's body: counted where its name is read, not here.
            Some(name) => {
                self.named.push((name, done.counted));
                ControlFlow::Continue(())
            }
            None => self.add(done.counted),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let named = match relation.0.as_slice() {
            [ast::ObjectNamePart::Identifier(one)] => {
                let name = one.value.to_lowercase();
                self.named
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == name)
                    .map(|(_, counted)| *counted)
            }
            _ => None,
        };
        self.add(named.unwrap_or(1))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn counted(sql: &str) -> u64 {
        let statement = DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        count(&statement, u64::MAX)
    }

    /// `t0` (one row) and `levels` more WITH queries, each reading the one before twice:
    /// `2^levels` copies of `t0` once copied out (for `crate::depth`'s tests too).
    pub(crate) fn doubling(levels: usize) -> String {
        let mut sql = "WITH t0 AS (SELECT 1 AS x)".to_string();
        for i in 1..=levels {
            let before = i - 1;
            sql.push_str(&format!(
                ", t{i} AS (SELECT x FROM t{before} UNION ALL SELECT x FROM t{before})"
            ));
        }
        sql + &format!(" SELECT count(*) FROM t{levels}")
    }

    /// `e` is `[sql] max_plan_nodes`'s refusal: a limit on the statement's shape, with a hint
    /// (for `crate::depth`'s tests too).
    pub(crate) fn refused_by_max_plan_nodes(e: &Error) {
        assert_eq!(
            (e.kind(), e.subject),
            (ErrorKind::Limit, Subject::StatementShape)
        );
        assert!(
            e.message.contains("`[sql] max_plan_nodes`") && e.hint.is_some(),
            "{e}"
        );
    }

    #[test]
    fn a_with_query_counts_where_it_is_read() {
        assert_eq!(counted("SELECT * FROM a JOIN b ON true"), 3);
        // t0 (a query) is read twice by t1, which the statement reads once.
        assert_eq!(counted(&doubling(1)), 1 + (1 + 2));
        assert_eq!(counted(&doubling(2)), 1 + (1 + 2 * (1 + 2)));
        // Subqueries count where they sit; a WITH inside one is its own.
        let nested = format!(
            "SELECT * FROM ({}) s WHERE x IN (SELECT x FROM a)",
            doubling(2)
        );
        assert_eq!(counted(&nested), 1 + counted(&doubling(2)) + 2);
        // A name no WITH query has is a table: one each.
        assert_eq!(counted("WITH t AS (SELECT 1) SELECT * FROM u, u"), 3);
        // Names are read as SQL reads them (unquoted, any case).
        assert_eq!(
            counted("WITH T AS (SELECT * FROM a, b) SELECT * FROM t, t"),
            1 + 2 * 3
        );
    }

    #[test]
    fn sixty_levels_are_refused_without_counting_them_all() {
        let statement = DFParser::parse_sql(&doubling(60))
            .unwrap()
            .pop_front()
            .unwrap();
        let e = check(&statement, 10_000).unwrap_err();
        refused_by_max_plan_nodes(&e);
        let explained = format!("EXPLAIN {}", doubling(60));
        let explained = DFParser::parse_sql(&explained)
            .unwrap()
            .pop_front()
            .unwrap();
        assert!(check(&explained, 10_000).is_err());
        let fine = DFParser::parse_sql(&doubling(8))
            .unwrap()
            .pop_front()
            .unwrap();
        check(&fine, 10_000).unwrap();
    }
}
