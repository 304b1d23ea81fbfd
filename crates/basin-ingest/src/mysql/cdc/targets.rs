//! What streaming a MySQL source needs, checked before it starts: the binary log on, in rows
//! (`binlog_format = ROW`), with whole rows (`binlog_row_image = FULL`), the privileges to read
//! it, and a primary key for every table; each with the SQL that fixes it in the hint. Then
//! the tables themselves: their columns in order (the log names none, only their positions)
//! and where their changes go.

use std::collections::HashMap;

use basin_catalog::Key;
use basin_core::{Error, Result};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::position::BinlogPos;
use crate::database::follow::CHANGELOG_SUFFIX;
use crate::mysql::connect::{self, MySource, MyTable, failed};
use crate::mysql::types::{Kind, MyColumn};

/// A source table and where its changes go.
pub(super) struct Target {
    pub table: MyTable,
    /// Every column at the source, in order, with what it loads as (`None`: left out with
    /// `--skip-unsupported`).
    pub columns: Vec<(MyColumn, Option<Kind>)>,
    /// The primary key's columns.
    pub key: Vec<String>,
    pub current: Key,
    pub changelog: Key,
}

/// The grant a replica's user needs.
fn grant_hint() -> String {
    "grant the source's user what a replica needs: GRANT SELECT, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'USER'@'%' (MariaDB 10.5+ also BINLOG MONITOR)".to_string()
}

/// Checks the server logs what change data capture reads.
pub(super) async fn check_server(conn: &mut Conn, source: &MySource) -> Result<()> {
    let name = &source.name;
    let row: Option<(Option<String>, Option<String>, Option<String>)> = conn
        .query_first("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image")
        .await
        .map_err(|e| failed(source, "cannot read the server's binary log settings", e))?;
    let (log_bin, format, image) = row.unwrap_or_default();
    let on = matches!(log_bin.as_deref(), Some("1" | "ON"));
    if !on {
        return Err(Error::invalid(format!(
            "source `{name}`: the server keeps no binary log (log_bin is off), which change data capture reads"
        ))
        .with_hint("start the server with a binary log: `log_bin = mysql-bin` and `server_id = 1` under [mysqld] in my.cnf, then restart it (MySQL 8 keeps one by default)"));
    }
    let format = format.unwrap_or_default();
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(Error::invalid(format!(
            "source `{name}`: binlog_format is {format}, and change data capture reads rows"
        ))
        .with_hint("SET GLOBAL binlog_format = 'ROW'; (and binlog_format = ROW in my.cnf, so it holds after a restart)"));
    }
    let image = image.unwrap_or_default();
    if !image.eq_ignore_ascii_case("FULL") {
        return Err(Error::invalid(format!(
            "source `{name}`: binlog_row_image is {image}, and change data capture needs whole rows"
        ))
        .with_hint(
            "SET GLOBAL binlog_row_image = 'FULL'; (and binlog_row_image = FULL in my.cnf)",
        ));
    }
    match server_position(conn).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::invalid(format!(
            "source `{name}`: the server reports no binary log position"
        ))
        .with_hint(grant_hint())),
        Err(e) => {
            Err(failed(source, "cannot read the binary log's position", e).with_hint(grant_hint()))
        }
    }
}

/// Where `source`'s binary log stands now, on a connection of its own.
pub async fn source_position(source: &MySource) -> Result<Option<BinlogPos>> {
    let mut conn = connect::connect(source).await?;
    let at = server_position(&mut conn)
        .await
        .map_err(|e| failed(source, "cannot read the binary log's position", e));
    let _ = conn.disconnect().await;
    at
}

/// Where the server's binary log stands now.
pub(super) async fn server_position(
    conn: &mut Conn,
) -> std::result::Result<Option<BinlogPos>, mysql_async::Error> {
    Ok(connect::log_position(conn)
        .await?
        .map(|(file, offset)| BinlogPos { file, offset }))
}

/// The source's tables, by `(database, table)`, each with a primary key.
pub(super) async fn targets(
    conn: &mut Conn,
    source: &MySource,
    skip_unsupported: bool,
) -> Result<HashMap<(String, String), Target>> {
    let mut targets = HashMap::new();
    for table in connect::source_tables(source, conn).await? {
        let target = target(conn, source, table, skip_unsupported).await?;
        targets.insert(
            (target.table.database.clone(), target.table.name.clone()),
            target,
        );
    }
    Ok(targets)
}

async fn target(
    conn: &mut Conn,
    source: &MySource,
    table: MyTable,
    skip_unsupported: bool,
) -> Result<Target> {
    let name = &source.name;
    let key = connect::primary_key(source, conn, &table).await?;
    if key.is_empty() {
        return Err(Error::invalid(format!(
            "source `{name}`: {} has no primary key, which change data capture needs to apply updates and deletes",
            table.display()
        ))
        .with_hint(format!(
            "add one at the source (`ALTER TABLE {} ADD PRIMARY KEY (...)`), or leave the table out of `tables`",
            table.quoted()
        )));
    }
    let columns = columns(conn, source, &table, skip_unsupported).await?;
    for k in &key {
        if !columns
            .iter()
            .any(|(c, kind)| &c.name == k && kind.is_some())
        {
            return Err(Error::invalid(format!(
                "source `{name}`: key column {}.{k} cannot be loaded",
                table.display()
            ))
            .with_hint("change data capture needs every key column; cast it in a view and load that with mode = \"snapshot\""));
        }
    }
    let current = Key::table(&format!("{}.{}", source.namespace, table.name))?;
    let changelog = Key::table(&format!(
        "{}.{}{CHANGELOG_SUFFIX}",
        source.namespace, table.name
    ))?;
    Ok(Target {
        table,
        columns,
        key,
        current,
        changelog,
    })
}

/// The table's columns in order, each with what it loads as; an unsupported one stops
/// unless `skip_unsupported` (as in the full load).
pub(super) async fn columns(
    conn: &mut Conn,
    source: &MySource,
    table: &MyTable,
    skip_unsupported: bool,
) -> Result<Vec<(MyColumn, Option<Kind>)>> {
    let mut columns = Vec::new();
    for column in connect::columns(source, conn, table).await? {
        let kind = match column.kind() {
            Ok(kind) => Some(kind),
            Err(_) if skip_unsupported => None,
            Err(reason) => {
                return Err(Error::invalid(format!(
                    "source `{}`: column {}.{}: {reason}",
                    source.name,
                    table.display(),
                    column.name
                ))
                .with_hint("pass --skip-unsupported to stream the other columns without it"));
            }
        };
        columns.push((column, kind));
    }
    Ok(columns)
}
