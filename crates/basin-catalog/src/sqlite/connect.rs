//! Opening the SQLite catalog: a file (WAL, fsynced commits) or memory.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use basin_core::{Error, ErrorKind, Result};

#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(super) pool: SqlitePool,
    /// One connection with `synchronous = NORMAL`, for records written after the fact (a
    /// synchronous call that already answered: `Queue::record_call`; an audit entry:
    /// `Audit::record_audit`); the same pool in memory.
    pub(super) relaxed: SqlitePool,
}

impl SqlStore {
    /// Opens (creating if missing) the SQLite catalog at `path`.
    ///
    /// WAL with `synchronous = FULL`: every transaction (a commit moving a branch, an event
    /// queued or settled) is fsynced to the WAL before it returns. `NORMAL` would only sync
    /// at checkpoints, so a power loss could undo commits and events already acknowledged;
    /// only records written after the fact (a synchronous call that already answered, an
    /// audit entry) take the `NORMAL` connection.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(60));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Store,
                    format!("cannot open the catalog at {}", path.display()),
                )
                .with_source(e)
            })?;
        // In WAL mode a `NORMAL` commit is in the log (the OS's cache) when it returns, and
        // the next `FULL` commit of any connection syncs it with its own. Opened on first
        // use: most processes (a CLI command) never write such a record.
        let relaxed = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options.synchronous(SqliteSynchronous::Normal));
        Ok(Self { pool, relaxed })
    }

    /// A private in-memory catalog (one connection, gone when dropped).
    pub async fn memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Ok(Self {
            relaxed: pool.clone(),
            pool,
        })
    }

    /// Starts a write transaction with `BEGIN IMMEDIATE`, so concurrent writers (threads or
    /// processes) queue on the database's write lock instead of failing mid-transaction.
    /// Dropping it without `commit` (an error, a cancelled future) rolls it back.
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}
