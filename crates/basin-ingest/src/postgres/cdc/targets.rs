//! The tables a follow streams: checked at the start (server version, `wal_level`, the
//! publication, a key for every table), and again at each Relation message the stream sends
//! (columns added, dropped or retyped at the source).

use std::collections::HashMap;

use basin_catalog::Key;
use basin_core::{Error, Result};
use basin_table::Tables;
use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::changes::Target;
use super::pgoutput::Relation;
use crate::postgres::connect::{self, PgTable, query_error};
use crate::postgres::source::PgSource;
use crate::postgres::types::{self, Decode};

pub use crate::database::follow::CHANGELOG_SUFFIX;

/// What a Relation message is checked against: where the tables are, and whether columns
/// Basin cannot store are left out.
pub(super) struct RelationCheck<'a> {
    pub source: &'a str,
    pub branch: &'a str,
    pub skip_unsupported: bool,
}

fn current_key(source: &PgSource, table: &PgTable) -> Result<Key> {
    Key::table(&format!("{}.{}", source.namespace, table.name))
}

fn changelog_key(source: &PgSource, table: &PgTable) -> Result<Key> {
    Key::table(&format!(
        "{}.{}{CHANGELOG_SUFFIX}",
        source.namespace, table.name
    ))
}

/// Checks the server and the tables can be streamed through `publication`, and finds them.
pub(super) async fn targets(
    conn: &mut PgConnection,
    source: &PgSource,
    publication: &str,
) -> Result<HashMap<u32, Target>> {
    let name = source.name.as_str();
    let row = sqlx::query(
        "SELECT current_setting('server_version_num')::int4, current_setting('wal_level')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(query_error(format!(
        "source `{name}`: cannot read the server's settings"
    )))?;
    let version: i32 = row.try_get(0).map_err(query_error("server_version_num"))?;
    let wal_level: String = row.try_get(1).map_err(query_error("wal_level"))?;
    if version < 140000 {
        return Err(Error::invalid(format!(
            "source `{name}`: change data capture needs Postgres 14 or newer (binary logical replication); the server is {}",
            version / 10000
        ))
        .with_hint("use mode = \"snapshot\" for this source"));
    }
    if wal_level != "logical" {
        return Err(Error::invalid(format!(
            "source `{name}`: the server's wal_level is `{wal_level}`, and change data capture needs `logical`"
        ))
        .with_hint("set wal_level = logical in postgresql.conf and restart Postgres (docs/ingest-postgres.md)"));
    }
    let found = connect::source_tables(conn, source).await?;
    let list = found
        .iter()
        .map(PgTable::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    let exists = sqlx::query("SELECT 1 FROM pg_publication WHERE pubname = $1")
        .bind(publication)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error(format!(
            "source `{name}`: cannot read its publication"
        )))?;
    if exists.is_none() {
        return Err(Error::not_found(format!(
            "source `{name}`: publication `{publication}` does not exist"
        ))
        .with_hint(format!(
            "create it at the source: `CREATE PUBLICATION {} FOR TABLE {list};` (or set `publication` in [sources.{name}])",
            connect::sql_ident(publication)
        )));
    }
    let mut targets = HashMap::new();
    for table in found {
        let listed = sqlx::query(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
        )
        .bind(publication)
        .bind(&table.schema)
        .bind(&table.name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error(format!("source `{name}`: cannot read its publication")))?;
        if listed.is_none() {
            return Err(Error::invalid(format!(
                "source `{name}`: publication `{publication}` does not include {}",
                table.display()
            ))
            .with_hint(format!(
                "`ALTER PUBLICATION {} ADD TABLE {};` at the source",
                connect::sql_ident(publication),
                table.sql()
            )));
        }
        let row = sqlx::query(
            "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
             FROM pg_class c WHERE c.oid = $1",
        )
        .bind(table.oid)
        .fetch_one(&mut *conn)
        .await
        .map_err(query_error(format!("source `{name}`: cannot read {}", table.display())))?;
        let identity: String = row.try_get(0).map_err(query_error("relreplident"))?;
        let primary: bool = row.try_get(1).map_err(query_error("indisprimary"))?;
        if identity == "n" || (identity == "d" && !primary) {
            return Err(no_key(name, &table.display()));
        }
        let decodes = decodes(conn, name, &table).await?;
        targets.insert(
            table.oid.0,
            Target {
                current: current_key(source, &table)?,
                changelog: changelog_key(source, &table)?,
                table,
                decodes,
            },
        );
    }
    Ok(targets)
}

async fn decodes(
    conn: &mut PgConnection,
    source: &str,
    table: &PgTable,
) -> Result<HashMap<String, Decode>> {
    Ok(connect::columns(conn, source, table)
        .await?
        .into_iter()
        .filter_map(|c| types::decode_of(&c).ok().map(|d| (c.name, d)))
        .collect())
}

/// A Relation message for a streamed table: its columns' types are looked up and checked
/// against the Basin table. An added column is fine (the next batch adds
/// it); a dropped or retyped one stops the stream.
pub(super) async fn check_relation(
    tables: &Tables,
    conn: &mut PgConnection,
    check: &RelationCheck<'_>,
    target: &mut Target,
    relation: &Relation,
) -> Result<()> {
    let name = check.source;
    let display = target.table.display();
    // The columns as the stream sends them from now on (the catalog may be further on).
    let mut decodes = HashMap::new();
    for column in &relation.columns {
        let described =
            connect::column_of_type(conn, name, &column.name, column.type_oid, column.type_mod)
                .await?;
        if let Ok(decode) = types::decode_of(&described) {
            decodes.insert(column.name.clone(), decode);
        }
    }
    if !relation.columns.iter().any(|c| c.key) {
        return Err(no_key(name, &display));
    }
    let at = tables.catalog().resolve(check.branch).await?;
    let table = tables.load(&at, &target.current).await?;
    let stop = |what: String| {
        Error::invalid(format!("source `{name}`: {display}.{what}")).with_hint(format!(
            "Basin does not drop or retype columns on its own: drop `{}` and `{}` (`basin table rm`) and run `basin ingest {name} --full` to start over",
            target.current, target.changelog
        ))
    };
    for field in table.metadata().current_schema().as_struct().fields() {
        let Some(column) = relation.columns.iter().find(|c| c.name == field.name) else {
            return Err(stop(format!(
                "{} was dropped or renamed at the source, and `{}` still has it",
                field.name, target.current
            )));
        };
        match decodes.get(&column.name) {
            Some(decode) if types::same_type(&field.field_type, &decode.iceberg_type(0)) => {}
            _ => {
                return Err(stop(format!(
                    "{} changed its type at the source; `{}` stores it as {}",
                    column.name, target.current, field.field_type
                )));
            }
        }
    }
    for column in &relation.columns {
        if !decodes.contains_key(&column.name) && !check.skip_unsupported {
            return Err(Error::invalid(format!(
                "source `{name}`: column {display}.{} was added with a type Basin cannot store",
                column.name
            ))
            .with_hint("pass --skip-unsupported to stream the other columns without it"));
        }
    }
    // Only now: a stop above leaves the batch before this relation to commit as it was.
    target.decodes.extend(decodes);
    Ok(())
}

pub(crate) fn no_key(source: &str, table: &str) -> Error {
    Error::invalid(format!(
        "source `{source}`: {table} has no primary key and no replica identity, so its updates and deletes cannot be matched to rows"
    ))
    .with_hint(format!(
        "add a primary key, or `ALTER TABLE {table} REPLICA IDENTITY FULL;` at the source"
    ))
}
