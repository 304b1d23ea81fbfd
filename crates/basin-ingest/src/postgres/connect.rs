//! Connections to a Postgres source, the snapshot every reader shares, and what the source's
//! catalog says about its tables.

use std::str::FromStr;
use std::time::Duration;

use basin_core::{Error, ErrorKind, Result};
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

use super::source::PgSource;
use super::types::PgColumn;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens one connection to the source; errors say what to check.
pub(crate) async fn connect(source: &PgSource) -> Result<PgConnection> {
    let mut options = PgConnectOptions::from_str(&source.url).map_err(|e| {
        Error::invalid(format!(
            "source `{}`: cannot read url `{}`",
            source.name, source.url
        ))
        .with_source(e)
        .with_hint("write postgres://USER@HOST:PORT/DATABASE (the password goes in password_env)")
    })?;
    // COPY takes longer than sqlx's slow-statement warning allows, by design.
    options = options
        .application_name("basin")
        .disable_statement_logging();
    if let Some(password) = &source.password {
        options = options.password(password);
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(connect_error(source, e)),
        Err(_) => Err(Error::io(format!(
            "source `{}`: no answer from {} within {}s",
            source.name,
            source.url,
            CONNECT_TIMEOUT.as_secs()
        ))
        .with_hint(
            "check the host and port in the source's url, and that a firewall lets Basin through",
        )),
    }
}

fn connect_error(source: &PgSource, e: sqlx::Error) -> Error {
    let name = &source.name;
    let url = &source.url;
    if let sqlx::Error::Io(io) = &e
        && matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        )
    {
        return Error::io(format!("source `{name}`: cannot connect to {url}: connection refused"))
            .with_hint("is Postgres running there and listening on that port? Check `url` in [sources.NAME] of basin.toml");
    }
    if let sqlx::Error::Database(db) = &e {
        let code = db.code().unwrap_or_default().to_string();
        let message = db.message().to_string();
        return match code.as_str() {
            // invalid_password, invalid_authorization_specification
            "28P01" | "28000" => {
                let hint = match &source.password_env {
                    Some(var) => format!("check the password in ${var} (the source's password_env) and the user in its url"),
                    None => "set password_env = \"VAR\" in [sources.NAME] and put the password in that variable".to_string(),
                };
                Error::invalid(format!(
                    "source `{name}`: Postgres refused the login: {message}"
                ))
                .with_hint(hint)
            }
            // invalid_catalog_name
            "3D000" => Error::not_found(format!("source `{name}`: {message}"))
                .with_hint("check the database name at the end of the source's url"),
            _ => Error::io(format!(
                "source `{name}`: cannot connect to {url}: {message}"
            )),
        };
    }
    Error::io(format!("source `{name}`: cannot connect to {url}"))
        .with_source(e)
        .with_hint("check `url` in [sources.NAME] of basin.toml")
}

/// An error from a statement on a connected source, naming what was being done.
pub(crate) fn query_error(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let context = context.into();
    move |e| match &e {
        sqlx::Error::Database(db) => {
            let kind = match db.code().as_deref() {
                // insufficient_privilege
                Some("42501") => ErrorKind::InvalidInput,
                _ => ErrorKind::Io,
            };
            let error = Error::new(kind, format!("{context}: {}", db.message()));
            if kind == ErrorKind::InvalidInput {
                error.with_hint(
                    "grant the source's user SELECT on the table (see docs/ingest-postgres.md)",
                )
            } else {
                error
            }
        }
        _ => Error::io(context).with_source(e),
    }
}

/// Starts the transaction whose snapshot every reader imports, and exports it.
pub(crate) async fn export_snapshot(conn: &mut PgConnection, source: &str) -> Result<String> {
    let context = format!("source `{source}`: cannot export a snapshot");
    // `Executor::execute` with text and no arguments runs it as a simple query (several
    // statements allowed); unlike `raw_sql`, its future is provably `Send`.
    sqlx::Executor::execute(
        &mut *conn,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    )
    .await
    .map_err(query_error(&context))?;
    let row = sqlx::query("SELECT pg_export_snapshot()")
        .fetch_one(&mut *conn)
        .await
        .map_err(query_error(&context))?;
    row.try_get::<String, _>(0).map_err(query_error(&context))
}

/// Makes `conn` see exactly what the exporting transaction sees.
pub(crate) async fn import_snapshot(
    conn: &mut PgConnection,
    snapshot: &str,
    source: &str,
) -> Result<()> {
    // The name is Postgres's own (hex digits and dashes); never anything else in the SQL.
    if snapshot.is_empty() || !snapshot.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Error::internal(format!(
            "unexpected snapshot name `{snapshot}`"
        )));
    }
    let sql = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'"
    );
    sqlx::Executor::execute(&mut *conn, sql.as_str())
        .await
        .map_err(query_error(format!(
            "source `{source}`: cannot share the snapshot"
        )))?;
    Ok(())
}

/// A source table as its catalog describes it.
#[derive(Clone, Debug)]
pub(crate) struct PgTable {
    pub schema: String,
    pub name: String,
    pub(crate) oid: Oid,
    /// Heap tables (and materialized views) are read in ctid ranges; others in one stream.
    pub heap: bool,
    /// Pages of the heap, for the ctid ranges.
    pub blocks: i64,
    /// The planner's row estimate (-1: never analyzed), for the progress bar.
    pub estimated_rows: f64,
}

impl PgTable {
    pub(crate) fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `schema.table` as SQL for a hint (quoted only where it must be).
    pub(crate) fn sql(&self) -> String {
        format!("{}.{}", sql_ident(&self.schema), sql_ident(&self.name))
    }

    /// `"schema"."table"`, quoted for SQL.
    pub(crate) fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// `name` as SQL for people to paste: quoted only when it must be.
pub(crate) fn sql_ident(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        quote_ident(name)
    }
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

const TABLE_COLUMNS: &str = "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind IN ('r', 'm'), \
     CASE WHEN c.relkind IN ('r', 'm') THEN pg_relation_size(c.oid) / current_setting('block_size')::int8 ELSE 0 END, \
     c.reltuples::float8 \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace";

fn table_from(row: &sqlx::postgres::PgRow) -> std::result::Result<PgTable, sqlx::Error> {
    Ok(PgTable {
        oid: row.try_get(0)?,
        schema: row.try_get(1)?,
        name: row.try_get(2)?,
        heap: row.try_get(3)?,
        blocks: row.try_get(4)?,
        estimated_rows: row.try_get(5)?,
    })
}

/// The source's tables: those it lists, or every table of its schema.
pub(crate) async fn source_tables(
    conn: &mut PgConnection,
    source: &PgSource,
) -> Result<Vec<PgTable>> {
    let name = &source.name;
    if let Some(schema) = &source.schema {
        let found = schema_tables(conn, name, schema).await?;
        if found.is_empty() {
            return Err(Error::not_found(format!(
                "source `{name}`: schema `{schema}` has no tables"
            ))
            .with_hint("check `schema` in the source (and the url's database), or list `tables`"));
        }
        return Ok(found);
    }
    let mut found = Vec::with_capacity(source.tables.len());
    for wanted in &source.tables {
        found.push(find_table(conn, name, wanted).await?);
    }
    Ok(found)
}

/// The table `schema.table` (or `table`, in `public`); not found names what there is.
pub(crate) async fn find_table(
    conn: &mut PgConnection,
    source: &str,
    wanted: &str,
) -> Result<PgTable> {
    let (schema, name) = wanted.split_once('.').unwrap_or(("public", wanted));
    let context = format!("source `{source}`: cannot look up table {wanted}");
    let row = sqlx::query(&format!(
        "{TABLE_COLUMNS} WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'm', 'v', 'f')"
    ))
    .bind(schema)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_error(&context))?;
    match row {
        Some(row) => table_from(&row).map_err(query_error(&context)),
        None => {
            let there = schema_tables(conn, source, schema)
                .await
                .unwrap_or_default();
            let names: Vec<&str> = there.iter().map(|t| t.name.as_str()).collect();
            let hint = match basin_core::suggest(name, names.iter().copied()) {
                Some(s) => format!("did you mean `{schema}.{s}`?"),
                None if names.is_empty() => format!(
                    "schema `{schema}` has no tables Basin can see (check the url's database and the user's privileges)"
                ),
                None => format!("the tables of `{schema}`: {}", names.join(", ")),
            };
            Err(Error::not_found(format!(
                "source `{source}`: table {schema}.{name} does not exist"
            ))
            .with_hint(hint))
        }
    }
}

/// Every table of `schema` (partitioned tables once, not their partitions), by name.
pub(crate) async fn schema_tables(
    conn: &mut PgConnection,
    source: &str,
    schema: &str,
) -> Result<Vec<PgTable>> {
    let rows = sqlx::query(&format!(
        "{TABLE_COLUMNS} WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname"
    ))
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_error(format!("source `{source}`: cannot list the tables of {schema}")))?;
    rows.iter()
        .map(table_from)
        .collect::<std::result::Result<_, _>>()
        .map_err(query_error(format!(
            "source `{source}`: cannot list the tables of {schema}"
        )))
}

/// A column of type `type_oid` with modifier `type_mod` (as a replication stream's Relation
/// message names it), described as `columns` describes a table's.
pub(crate) async fn column_of_type(
    conn: &mut PgConnection,
    source: &str,
    name: &str,
    type_oid: u32,
    type_mod: i32,
) -> Result<PgColumn> {
    let context = format!("source `{source}`: cannot read the type of column {name}");
    let row = sqlx::query(
        "SELECT coalesce(b.typname, t.typname)::text, coalesce(b.typtype, t.typtype)::text, \
         CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE $2 END, format_type(t.oid, $2), \
         e.typname::text, e.typtype::text \
         FROM pg_type t \
         LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype \
         LEFT JOIN pg_type e ON coalesce(b.typcategory, t.typcategory) = 'A' AND e.oid = coalesce(b.typelem, t.typelem) \
         WHERE t.oid = $1",
    )
    .bind(Oid(type_oid))
    .bind(type_mod)
    .fetch_one(&mut *conn)
    .await
    .map_err(query_error(&context))?;
    let column = (|| {
        Ok::<_, sqlx::Error>(PgColumn {
            name: name.to_string(),
            type_name: row.try_get(0)?,
            type_type: row.try_get(1)?,
            type_mod: row.try_get(2)?,
            display: row.try_get(3)?,
            element: match (row.try_get(4)?, row.try_get(5)?) {
                (Some(name), Some(kind)) => Some((name, kind)),
                _ => None,
            },
        })
    })();
    column.map_err(query_error(&context))
}

/// The table's columns, in order (a domain as its base type).
pub(crate) async fn columns(
    conn: &mut PgConnection,
    source: &str,
    table: &PgTable,
) -> Result<Vec<PgColumn>> {
    let context = format!(
        "source `{source}`: cannot read the columns of {}",
        table.display()
    );
    let rows = sqlx::query(
        "SELECT a.attname::text, coalesce(b.typname, t.typname)::text, coalesce(b.typtype, t.typtype)::text, \
         CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END, format_type(a.atttypid, a.atttypmod), \
         e.typname::text, e.typtype::text \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype \
         LEFT JOIN pg_type e ON coalesce(b.typcategory, t.typcategory) = 'A' AND e.oid = coalesce(b.typelem, t.typelem) \
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(table.oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_error(&context))?;
    rows.iter()
        .map(|row| {
            Ok(PgColumn {
                name: row.try_get(0)?,
                type_name: row.try_get(1)?,
                type_type: row.try_get(2)?,
                type_mod: row.try_get(3)?,
                display: row.try_get(4)?,
                element: match (row.try_get(5)?, row.try_get(6)?) {
                    (Some(name), Some(kind)) => Some((name, kind)),
                    _ => None,
                },
            })
        })
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(query_error(&context))
}
