//! Connections to a MySQL or MariaDB source, the one point in time every reader reads at, and
//! the tables and columns chosen from `information_schema`.

use basin_core::{Error, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::types::MyColumn;

/// A MySQL or MariaDB source, resolved from `[sources.NAME]`.
#[derive(Clone)]
pub struct MySource {
    pub name: String,
    /// `mysql://USER@HOST:PORT/DATABASE` (or `mariadb://`), without a password.
    pub url: String,
    pub password: Option<String>,
    /// `database.table` (or `table`, in the url's database); empty with `schema`.
    pub tables: Vec<String>,
    /// Every table of this database.
    pub schema: Option<String>,
    pub namespace: String,
    /// Connections reading tables in parallel.
    pub readers: usize,
}

impl std::fmt::Debug for MySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySource")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tables", &self.tables)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// A source table: its database and name.
#[derive(Clone, Debug)]
pub(crate) struct MyTable {
    pub database: String,
    pub name: String,
    pub estimated_rows: Option<u64>,
}

impl MyTable {
    pub(crate) fn display(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }

    /// `database`.`name`, quoted for a statement.
    pub(crate) fn quoted(&self) -> String {
        format!("{}.{}", quote(&self.database), quote(&self.name))
    }
}

pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

pub(crate) fn failed(source: &MySource, what: &str, e: mysql_async::Error) -> Error {
    let hint = match &e {
        mysql_async::Error::Server(s) if s.code == 1045 => {
            "check the url's user and the password in the source's password_env"
        }
        mysql_async::Error::Server(s) if s.code == 1044 || s.code == 1142 || s.code == 1227 => {
            "grant the source's user SELECT on the tables (and RELOAD for several readers): GRANT SELECT, RELOAD ON *.* TO 'USER'@'%'"
        }
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => {
            "check that the server runs and the url's host and port reach it"
        }
        _ => "see the server's message above",
    };
    Error::invalid(format!("source `{}`: {what}: {e}", source.name)).with_hint(hint)
}

/// A connection, its session in UTC and UTF-8 (`timestamp` values arrive in UTC).
pub(crate) async fn connect(source: &MySource) -> Result<Conn> {
    let url = match source.url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => source.url.clone(),
    };
    let opts = Opts::from_url(&url).map_err(|e| {
        Error::invalid(format!(
            "source `{}`: cannot read its url: {e}",
            source.name
        ))
        .with_hint("write it as mysql://USER@HOST:3306/DATABASE")
    })?;
    let opts = OptsBuilder::from_opts(opts)
        .pass(source.password.clone())
        .prefer_socket(false)
        .init(vec![
            "SET time_zone = '+00:00'",
            "SET NAMES utf8mb4",
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        ]);
    Conn::new(opts)
        .await
        .map_err(|e| failed(source, "cannot connect", e))
}

/// Where the source's binary log stood at the load's point in time: `file:position`, and the
/// GTID set when the server keeps one (for change data capture to start from).
#[derive(Clone, Debug, Default)]
pub(crate) struct BinlogPosition {
    pub file_position: Option<String>,
    pub gtid: Option<String>,
}

/// Opens one consistent snapshot on every reader. With several readers (and on MySQL,
/// which cannot say where its log stood at a snapshot), the coordinator holds `FLUSH TABLES
/// WITH READ LOCK` while each starts its snapshot and the binary log's position is read, so
/// all see the same instant (as mysqldump and mydumper do); on MariaDB one reader's own
/// `START TRANSACTION WITH CONSISTENT SNAPSHOT` is that instant, and the server says where
/// the log stood at it. A user without `RELOAD` gets one reader (and, on MySQL, no position).
pub(crate) async fn open_snapshot(
    source: &MySource,
    coordinator: &mut Conn,
    readers: &mut Vec<Conn>,
) -> Result<BinlogPosition> {
    const START: &str = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";
    let version: Option<String> = coordinator
        .query_first("SELECT @@version")
        .await
        .map_err(|e| failed(source, "cannot read the server's version", e))?;
    let mariadb = version.is_some_and(|v| v.contains("MariaDB"));
    let mut locked = readers.len() > 1 || !mariadb;
    if locked {
        match coordinator.query_drop("FLUSH TABLES WITH READ LOCK").await {
            Ok(()) => {}
            Err(mysql_async::Error::Server(e)) if [1044, 1045, 1227].contains(&e.code) => {
                tracing::warn!(source = %source.name, "no RELOAD privilege: one reader, without the lock ({})", e.message);
                locked = false;
                readers.truncate(1);
            }
            Err(e) => {
                return Err(failed(
                    source,
                    "cannot hold the tables still while the readers start",
                    e,
                ));
            }
        }
    }
    for reader in readers.iter_mut() {
        reader
            .query_drop(START)
            .await
            .map_err(|e| failed(source, "cannot start a consistent snapshot", e))?;
    }
    let position = if locked {
        let position = master_status(coordinator).await;
        coordinator
            .query_drop("UNLOCK TABLES")
            .await
            .map_err(|e| failed(source, "cannot release the read lock", e))?;
        position
    } else {
        snapshot_status(&mut readers[0]).await
    };
    Ok(position)
}

/// `SHOW MASTER STATUS` and the GTID set, read under the lock (none without the privilege
/// or a binary log: a snapshot load needs neither).
async fn master_status(conn: &mut Conn) -> BinlogPosition {
    let file_position = log_position(conn)
        .await
        .ok()
        .flatten()
        .map(|(file, offset)| format!("{file}:{offset}"));
    BinlogPosition {
        gtid: gtid(conn, file_position.as_deref()).await,
        file_position,
    }
}

/// Where the server's binary log stands now, `(file, offset)`: `SHOW MASTER STATUS` (MySQL
/// 8.4 calls it `SHOW BINARY LOG STATUS`).
pub(crate) async fn log_position(
    conn: &mut Conn,
) -> std::result::Result<Option<(String, u64)>, mysql_async::Error> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(row) => row,
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
            conn.query_first("SHOW BINARY LOG STATUS").await?
        }
        Err(e) => return Err(e),
    };
    Ok(row.and_then(|row| {
        let file: Option<String> = row.get(0);
        let offset: Option<u64> = row.get(1);
        Some((file.filter(|f| !f.is_empty())?, offset?))
    }))
}

/// MariaDB's position of the binary log at this connection's consistent snapshot.
async fn snapshot_status(conn: &mut Conn) -> BinlogPosition {
    let rows: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .unwrap_or_default();
    let get = |name: &str| rows.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let file_position = match (get("Binlog_snapshot_file"), get("Binlog_snapshot_position")) {
        (Some(f), Some(p)) if !f.is_empty() => Some(format!("{f}:{p}")),
        _ => None,
    };
    BinlogPosition {
        gtid: gtid(conn, file_position.as_deref()).await,
        file_position,
    }
}

/// The GTID set at the load's instant: MariaDB's for the log's `file:position` exactly
/// (`BINLOG_GTID_POS`: the global one may have moved on since the snapshot began); MySQL's
/// `gtid_executed`, read under the lock.
async fn gtid(conn: &mut Conn, file_position: Option<&str>) -> Option<String> {
    if let Some((file, position)) = file_position.and_then(|p| p.rsplit_once(':'))
        && let Ok(Some(Some(value))) = conn
            .exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (file, position))
            .await
    {
        return Some(value).filter(|v| !v.is_empty());
    }
    if let Ok(Some(value)) = conn
        .query_first::<String, _>("SELECT @@global.gtid_executed")
        .await
        && !value.is_empty()
    {
        return Some(value);
    }
    None
}

/// The source's tables: the listed ones (each must exist), or every base table of `schema`.
pub(crate) async fn source_tables(source: &MySource, conn: &mut Conn) -> Result<Vec<MyTable>> {
    let default_db = source
        .url
        .rsplit_once('/')
        .map(|(_, db)| db.split('?').next().unwrap_or_default().to_string())
        .filter(|db| !db.is_empty() && !db.contains('@'));
    let wanted: Vec<(String, Option<String>)> = match &source.schema {
        Some(schema) => vec![(schema.clone(), None)],
        None => source
            .tables
            .iter()
            .map(|t| match t.split_once('.') {
                Some((db, name)) => Ok((db.to_string(), Some(name.to_string()))),
                None => default_db
                    .clone()
                    .map(|db| (db, Some(t.clone())))
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "source `{}`: table `{t}` names no database, and the url none",
                            source.name
                        ))
                        .with_hint("write it as DATABASE.TABLE")
                    }),
            })
            .collect::<Result<_>>()?,
    };
    let mut found = Vec::new();
    for (database, name) in wanted {
        let rows: Vec<(String, Option<u64>)> = conn
            .exec(
                "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'VIEW') \
                 AND (? IS NULL OR TABLE_NAME = ?) ORDER BY TABLE_NAME",
                (&database, &name, &name),
            )
            .await
            .map_err(|e| failed(source, "cannot list its tables", e))?;
        if rows.is_empty() {
            let what = match &name {
                Some(name) => format!("table `{database}.{name}`"),
                None => format!("database `{database}`, or it holds no table"),
            };
            return Err(Error::not_found(format!(
                "source `{}` has no {what}",
                source.name
            ))
            .with_hint("check `tables` (DATABASE.TABLE) in the source's section of basin.toml, and the user's grants"));
        }
        found.extend(rows.into_iter().map(|(name, rows)| MyTable {
            database: database.clone(),
            name,
            estimated_rows: rows,
        }));
    }
    Ok(found)
}

/// The columns of a table's primary key, in order (none without one).
pub(crate) async fn primary_key(
    source: &MySource,
    conn: &mut Conn,
    table: &MyTable,
) -> Result<Vec<String>> {
    conn.exec(
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
         ORDER BY ORDINAL_POSITION",
        (&table.database, &table.name),
    )
    .await
    .map_err(|e| {
        failed(
            source,
            &format!("cannot read the key of {}", table.display()),
            e,
        )
    })
}

/// A table's columns, in order.
pub(crate) async fn columns(
    source: &MySource,
    conn: &mut Conn,
    table: &MyTable,
) -> Result<Vec<MyColumn>> {
    type Described = (
        String,
        String,
        String,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<String>,
    );
    let rows: Vec<Described> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, \
             DATETIME_PRECISION, CHARACTER_SET_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (&table.database, &table.name),
        )
        .await
        .map_err(|e| {
            failed(
                source,
                &format!("cannot read the columns of {}", table.display()),
                e,
            )
        })?;
    Ok(rows
        .into_iter()
        .map(
            |(name, data_type, display, precision, scale, fraction_digits, charset)| MyColumn {
                name,
                data_type: data_type.to_ascii_lowercase(),
                display,
                // `bit(n)`'s width is its precision.
                precision,
                scale,
                fraction_digits,
                charset,
            },
        )
        .collect())
}
