//! The Postgres catalog's schema: one migration per change, applied in order and tracked in
//! `basin_schema_version`. The tables and indexes are SQLite's (`sqlite/migrations.rs`, through its
//! migration 9), in Postgres types:
//!
//! - every integer is `BIGINT` (milliseconds, counts, bytes), so rows decode to `i64` as
//!   they do from SQLite;
//! - names, ids and keys are `TEXT COLLATE "C"`: byte order, as SQLite compares, which
//!   the prefix and namespace range queries rely on (`id >= 'ab' AND id < 'ab\x7f'`);
//! - documents the catalog itself writes and reads (a commit's operations and properties, a
//!   key's content, an event's payload and result) are `JSONB`; the records the service
//!   owns (runs, maintenance runs, functions) are `TEXT`, handed back byte for byte.

use async_trait::async_trait;
use sqlx::Executor;

use super::PgStore;
use super::commits::read_ref;
use crate::commit_rules::ROOT_MESSAGE;
use crate::model::CommitId;
use crate::store::Store;
use basin_core::time::now_ms;
use basin_core::{Error, ErrorKind, Result};

/// Schema migrations, applied in order.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE commits (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    parent TEXT COLLATE "C",
    merge_parent TEXT COLLATE "C",
    author TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    operations JSONB NOT NULL,
    properties JSONB NOT NULL
);
CREATE TABLE commit_parents (
    child TEXT COLLATE "C" NOT NULL,
    parent TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (child, parent)
);
CREATE TABLE contents (
    commit_id TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value JSONB NOT NULL,
    PRIMARY KEY (commit_id, key)
);
CREATE TABLE refs (
    name TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL,
    commit_id TEXT COLLATE "C" NOT NULL
);

CREATE TABLE invocations (
    id TEXT COLLATE "C" PRIMARY KEY,
    function TEXT NOT NULL,
    env_hash TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    cpu_ms DOUBLE PRECISION NOT NULL,
    peak_memory_bytes BIGINT NOT NULL,
    memory_limit_bytes BIGINT NOT NULL,
    rows_in BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    rows_out BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    kind TEXT NOT NULL DEFAULT 'function',
    bytes_scanned BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX invocations_started ON invocations (started_at_ms);

CREATE TABLE runs (
    id TEXT COLLATE "C" PRIMARY KEY,
    started_at_ms BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX runs_started ON runs (started_at_ms);

CREATE TABLE tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE functions (
    name TEXT COLLATE "C" PRIMARY KEY,
    deployed_at_ms BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE events (
    id TEXT COLLATE "C" PRIMARY KEY,
    function TEXT COLLATE "C" NOT NULL,
    state TEXT NOT NULL,
    payload JSONB NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    next_at_ms BIGINT NOT NULL,
    lease_until_ms BIGINT,
    error TEXT,
    logs TEXT NOT NULL DEFAULT '',
    commit_id TEXT COLLATE "C",
    result JSONB
);
CREATE INDEX events_due ON events (function, state, next_at_ms);
CREATE INDEX events_created ON events (created_at_ms);

CREATE TABLE trigger_cursors (
    name TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE history_cuts (
    commit_id TEXT COLLATE "C" PRIMARY KEY,
    removed_at_ms BIGINT NOT NULL,
    note TEXT NOT NULL
);

CREATE TABLE maintenance_runs (
    id TEXT COLLATE "C" PRIMARY KEY,
    started_at_ms BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX maintenance_started ON maintenance_runs (started_at_ms);
"#,
    // 2 (SQLite's 10): the node that ran each event last, settings fixed once for every
    // node, and leases on work one node does at a time.
    r#"
ALTER TABLE events ADD COLUMN node TEXT;
CREATE TABLE settings (
    name TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE leases (
    name TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
-- Claims read live events oldest first: in index order, stopping at the batch's size,
-- instead of sorting every due event of a backlog.
CREATE INDEX events_queue ON events (function, created_at_ms, id)
    WHERE state IN ('pending', 'failed', 'running');
"#,
];

/// The advisory lock `initialize` holds while it migrates ("basin" and 1), so two nodes
/// starting at once do not both create the schema.
const SCHEMA_LOCK: i64 = 0x6261_7369_6e00_0001;

#[async_trait]
impl Store for PgStore {
    async fn initialize(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // A second node starting now waits here, then finds the schema made.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS basin_schema_version \
             (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(max(version), 0) FROM basin_schema_version")
                .fetch_one(&mut *tx)
                .await?;
        if version > MIGRATIONS.len() as i64 {
            return Err(Error::new(
                ErrorKind::Store,
                format!(
                    "the catalog at {} has schema version {version}; this Basin knows up to {}",
                    self.shown,
                    MIGRATIONS.len()
                ),
            )
            .with_hint("run the newer Basin that upgraded it, on every node"));
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            // Several statements, so the simple protocol. Through `Executor` (a boxed
            // future): `RawSql::execute` trips the `Send` check of `async_trait` methods.
            Executor::execute(&mut *tx, sqlx::raw_sql(migration)).await?;
            sqlx::query(
                "INSERT INTO basin_schema_version (version, applied_at_ms) VALUES ($1, $2)",
            )
            .bind(i as i64 + 1)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        if read_ref(&mut tx, "main").await?.is_none() {
            let root = CommitId::generate();
            sqlx::query(
                "INSERT INTO commits (id, parent, merge_parent, author, message, created_at_ms, \
                 operations, properties) VALUES ($1, NULL, NULL, 'basin', $2, $3, '[]', '{}')",
            )
            .bind(root.as_str())
            .bind(ROOT_MESSAGE)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO refs (name, kind, commit_id) VALUES ('main', 'branch', $1)")
                .bind(root.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
