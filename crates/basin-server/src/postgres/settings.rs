//! Statements about the connection itself, answered without the lakehouse's tables:
//! `SET`/`SHOW basin.ref` and `search_path`, the refusal of `SET datafusion.*`, and the
//! time limit a connection's `statement_timeout` asks for.

use std::sync::Arc;
use std::time::Duration;

use basin_core::Error;
use basin_sql::policy::variable_name;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use futures::stream;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::PgWireResult;

use datafusion_postgres::pgwire;

/// The connection setting that picks the ref.
pub(super) const REF: &str = "basin.ref";
/// Connection metadata: who connected, as `current_user` answers (the token's name).
pub(super) const WHO: &str = "basin.who";
/// The id of the token the connection logged in with, looked up again as it goes on
/// (`connection::TOKEN_CHECK`): revoking the token ends the connection.
pub(super) const TOKEN_ID: &str = "basin.token_id";
/// The id of the token the connection logged in with, a sign-in's too (`oidc:SUBJECT`):
/// whose turns its statements take (`crate::turns`).
pub(super) const READER: &str = "basin.reader";
/// When the sign-in token (a JWT) the connection logged in with expires (ms): the connection
/// ends at its first message after.
pub(super) const EXPIRES: &str = "basin.expires_at_ms";
/// The logged-in token's grants (JSON), which each statement acts with.
pub(super) const GRANTS: &str = "basin.grants";
/// The connection's `search_path`: where unqualified table names are looked up.
pub(super) const SEARCH_PATH: &str = "search_path";
/// Postgres' default `search_path`.
pub(super) const DEFAULT_SEARCH_PATH: &str = "\"$user\", public";

/// The value of `SET <variable> = ...` (or `TO ...`), if this is that statement: the values
/// joined with `, `, quotes taken off.
pub(super) fn set_value(statement: &Statement, name: &str) -> Option<String> {
    match statement {
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) if variable_name(variable) == name.to_ascii_lowercase() && !values.is_empty() => Some(
            values
                .iter()
                .map(|v| v.to_string().trim_matches(['\'', '"']).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

pub(super) fn is_show(statement: &Statement, name: &str) -> bool {
    matches!(statement, Statement::ShowVariable { variable }
        if variable.iter().map(ToString::to_string).collect::<Vec<_>>().join(".").eq_ignore_ascii_case(name))
}

/// Statements about the connection itself, answered by `Backend::connection_statement`.
pub(super) fn is_connection_statement(statement: &Statement) -> bool {
    engine_setting(statement).is_some()
        || [REF, SEARCH_PATH]
            .iter()
            .any(|name| set_value(statement, name).is_some() || is_show(statement, name))
}

/// The statement policy's refusal of `SET datafusion.*` (the engine's limits), given before
/// datafusion-postgres' hook would answer `SET` for it on a context every connection shares.
pub(super) fn engine_setting(statement: &Statement) -> Option<Error> {
    match statement {
        // Quoted or not (`SET "datafusion.execution.batch_size"`): the name the engine reads.
        Statement::Set(Set::SingleAssignment { variable, .. })
            if variable_name(variable).starts_with("datafusion.") =>
        {
            basin_sql::policy::check_sql(statement).err()
        }
        _ => None,
    }
}

/// The ref a connection reads: its `SET basin.ref`, else its database name.
pub(super) fn connection_ref<C: ClientInfo + ?Sized>(client: &C) -> String {
    client
        .metadata()
        .get(REF)
        .cloned()
        .unwrap_or_else(|| "main".to_string())
}

/// The one text column a `SHOW` answers.
pub(super) fn text_field(name: &str) -> FieldInfo {
    FieldInfo::new(name.to_string(), None, None, Type::TEXT, FieldFormat::Text)
}

/// `SHOW basin.ref` or `SHOW search_path`: one row, one text column.
pub(super) fn show_value(name: &str, value: &str) -> PgWireResult<Response> {
    let fields = Arc::new(vec![text_field(name)]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter([Ok(row)]),
    )))
}

/// The time limit of a connection's next statement: its `statement_timeout` (kept by
/// datafusion-postgres' SET hook under this key), within the server's `[sql] query_timeout`.
pub(super) fn statement_timeout<C: ClientInfo + ?Sized>(
    client: &C,
    default: Option<Duration>,
) -> Option<Duration> {
    let asked = client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    match (asked, default) {
        (Some(a), Some(limit)) => Some(a.min(limit)),
        (a, limit) => a.or(limit),
    }
}

#[cfg(test)]
mod tests {
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    use super::*;

    #[test]
    fn engine_settings_are_refused_and_connection_settings_are_not() {
        let parser = PostgresCompatibilityParser::new();
        let refused = |sql: &str| engine_setting(&parser.parse(sql).unwrap()[0]).is_some();
        assert!(refused("SET \"datafusion.execution.batch_size\" = 1"));
        assert!(refused("SET \"DataFusion\".execution.batch_size TO 1"));
        assert!(refused("SET datafusion.execution.batch_size = 1"));
        assert!(refused("SET DataFusion.optimizer.max_passes TO 1"));
        assert!(!refused("SET basin.ref = 'dev'"));
        assert!(!refused("SET statement_timeout = 5000"));
    }
}
