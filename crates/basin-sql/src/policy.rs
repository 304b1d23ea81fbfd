//! The one statement policy of every SQL front door (`basin query`, the HTTP API and the
//! console, `--remote`, the Postgres wire protocol, SQL models): SQL reads the lakehouse's
//! tables and changes nothing. Allowed: queries (`SELECT`, `WITH`, `VALUES`), `EXPLAIN` of
//! them (with `ANALYZE`, which runs the query), `SHOW` and `DESCRIBE`, `SET basin.*`, and
//! views that live for one script. Everything else is refused by name, before planning:
//! above all what would reach files (external tables, `COPY`, `SELECT INTO`) or change the
//! catalog (DDL, DML) or the engine's limits (`SET datafusion.*`).
//!
//! The plan is checked again after planning ([`check_plan`]), and sessions have no file
//! system object store beyond the warehouse and no table factories (see `crate::limits`), so a
//! statement that slips past the parser check still finds no file to open.

use basin_core::{Error, Result, Subject};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, ObjectType, Query, Set, SetExpr, Statement};

const HINT: &str = "Basin's SQL only reads tables: change data with `basin import`, a pipeline \
                    (`basin run`) or an Iceberg engine through the REST catalog";

/// Refuses a statement (by name) that is not a read of the lakehouse's tables.
pub fn check(statement: &DfStatement) -> Result<()> {
    match statement {
        DfStatement::Statement(s) => check_sql(s),
        DfStatement::Explain(explain) => check(&explain.statement),
        DfStatement::CreateExternalTable(_) => Err(refused("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => Err(refused("COPY")),
        DfStatement::Reset(_) => Err(refused("RESET")),
    }
}

/// [`check`] for a statement parsed by sqlparser alone (the Postgres door's parser).
pub fn check_sql(statement: &Statement) -> Result<()> {
    match statement {
        Statement::Query(query) => check_query(query),
        Statement::Explain { statement, .. } => check_sql(statement),
        Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowViews { .. } => Ok(()),
        Statement::CreateView(view) if !view.materialized => check_query(&view.query),
        Statement::Drop {
            object_type: ObjectType::View,
            ..
        } => Ok(()),
        Statement::Set(Set::SingleAssignment { variable, .. })
            if variable_name(variable).starts_with("basin.") =>
        {
            Ok(())
        }
        other => Err(refused(&kind(other))),
    }
}

/// A setting's name as the engine reads it: its parts' values without quotes, joined by `.`,
/// in lower case. `SET "datafusion.execution.batch_size"` names the same setting as the
/// unquoted form, and must be judged as it.
pub fn variable_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.clone(),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
        .to_ascii_lowercase()
}

fn check_query(query: &Query) -> Result<()> {
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            check_query(&cte.query)?;
        }
    }
    check_body(&query.body)
}

fn check_body(body: &SetExpr) -> Result<()> {
    match body {
        SetExpr::Select(select) if select.into.is_some() => Err(refused("SELECT INTO")),
        SetExpr::Query(query) => check_query(query),
        SetExpr::SetOperation { left, right, .. } => {
            check_body(left)?;
            check_body(right)
        }
        SetExpr::Insert(_) => Err(refused("INSERT")),
        SetExpr::Update(_) => Err(refused("UPDATE")),
        SetExpr::Delete(_) => Err(refused("DELETE")),
        SetExpr::Merge(_) => Err(refused("MERGE")),
        _ => Ok(()),
    }
}

/// The second wall: a plan may only read, create or drop a session's view, or be a
/// `SET`/`SHOW` the first wall let through.
pub fn check_plan(plan: &LogicalPlan) -> Result<()> {
    match plan {
        LogicalPlan::Dml(dml) => Err(refused(&format!("{} (DML)", dml.op))),
        LogicalPlan::Copy(_) => Err(refused("COPY")),
        LogicalPlan::Ddl(DdlStatement::CreateView(_) | DdlStatement::DropView(_)) => Ok(()),
        LogicalPlan::Ddl(ddl) => Err(refused(ddl.name())),
        LogicalPlan::Explain(explain) => check_plan(&explain.plan),
        LogicalPlan::Analyze(analyze) => check_plan(&analyze.input),
        _ => Ok(()),
    }
}

fn refused(kind: &str) -> Error {
    Error::invalid(format!(
        "{kind} is not allowed: Basin's SQL reads the lakehouse's tables and changes nothing"
    ))
    .with_hint(HINT)
    .about(Subject::Refused)
}

/// A statement's kind, as its leading keywords (`CREATE SCHEMA`, `INSERT INTO`, `COPY`).
fn kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let mut words = Vec::new();
    for word in text.split_whitespace().take(3) {
        let keyword = word.chars().all(|c| c.is_ascii_uppercase() || c == '_');
        if !keyword || (!words.is_empty() && !KEYWORDS.contains(&word)) {
            break;
        }
        words.push(word);
    }
    if words.is_empty() {
        "this statement".to_string()
    } else {
        words.join(" ")
    }
}

/// Words that may follow a statement's first keyword and still name its kind.
const KEYWORDS: &[&str] = &[
    "TABLE",
    "EXTERNAL",
    "SCHEMA",
    "DATABASE",
    "CATALOG",
    "INTO",
    "FROM",
    "VIEW",
    "MATERIALIZED",
    "INDEX",
    "FUNCTION",
    "TEMPORARY",
    "OR",
    "REPLACE",
    "SECRET",
    "EXTENSION",
    "ROLE",
    "USER",
    "SEQUENCE",
    "TYPE",
    "TRIGGER",
    "PROCEDURE",
    "DATA",
];

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn verdict(sql: &str) -> std::result::Result<(), String> {
        let statements = DFParser::parse_sql(sql).expect("parses");
        statements.iter().try_for_each(check).map_err(|e| e.message)
    }

    #[test]
    fn reads_are_allowed() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "VALUES (1), (2)",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT * FROM range(10)",
            "SHOW TABLES",
            "SHOW COLUMNS FROM t",
            "SHOW datafusion.execution.batch_size",
            "CREATE VIEW v AS SELECT 1",
            "CREATE OR REPLACE VIEW v AS SELECT 1",
            "DROP VIEW v",
            "SELECT 1 UNION ALL SELECT 2",
            "SET basin.ref = 'dev'",
        ] {
            assert_eq!(verdict(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn what_reaches_files_or_the_catalog_is_refused_by_name() {
        for (sql, kind) in [
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("CREATE SCHEMA s", "CREATE SCHEMA"),
            ("CREATE DATABASE d", "CREATE DATABASE"),
            ("CREATE TABLE t (a INT)", "CREATE TABLE"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("INSERT INTO t VALUES (1)", "INSERT INTO"),
            ("DELETE FROM t", "DELETE FROM"),
            ("UPDATE t SET a = 1", "UPDATE"),
            ("DROP TABLE t", "DROP TABLE"),
            ("DROP SCHEMA s", "DROP SCHEMA"),
            ("SELECT 1 INTO t", "SELECT INTO"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("SET \"datafusion.execution.batch_size\" = 1", "SET"),
            ("SET \"datafusion\".execution.batch_size = 1", "SET"),
            ("RESET datafusion.execution.batch_size", "RESET"),
            (
                "CREATE FUNCTION f() RETURNS INT RETURN 1",
                "CREATE FUNCTION",
            ),
            ("PREPARE p AS SELECT 1", "PREPARE"),
            ("EXPLAIN INSERT INTO t VALUES (1)", "INSERT INTO"),
        ] {
            let message = verdict(sql).expect_err(sql);
            assert!(
                message.starts_with(&format!("{kind} is not allowed")),
                "{sql}: {message}"
            );
        }
    }

    #[test]
    fn a_statement_kind_is_its_leading_keywords() {
        let kind_of = |sql: &str| match &DFParser::parse_sql(sql).unwrap()[0] {
            DfStatement::Statement(s) => kind(s),
            _ => unreachable!("a plain statement"),
        };
        assert_eq!(kind_of("INSERT INTO T VALUES (1)"), "INSERT INTO");
        assert_eq!(kind_of("TRUNCATE TABLE t"), "TRUNCATE TABLE");
        assert_eq!(kind_of("ALTER TABLE t ADD COLUMN b INT"), "ALTER TABLE");
    }
}
