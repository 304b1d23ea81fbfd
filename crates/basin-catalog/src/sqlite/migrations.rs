//! The SQLite catalog's schema: one migration per change, applied in order.

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::SqlStore;
use super::commits::read_ref;
use crate::commit_rules::ROOT_MESSAGE;
use crate::model::CommitId;
use crate::store::Store;
use basin_core::Result;
use basin_core::time::now_ms;

/// Schema migrations, applied in order and tracked in `PRAGMA user_version`.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE commits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    parent TEXT,
    merge_parent TEXT,
    author TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    operations TEXT NOT NULL,
    properties TEXT NOT NULL
);
CREATE TABLE commit_parents (
    child TEXT NOT NULL,
    parent TEXT NOT NULL,
    PRIMARY KEY (child, parent)
) WITHOUT ROWID;
CREATE TABLE contents (
    commit_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (commit_id, key)
) WITHOUT ROWID;
CREATE TABLE refs (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    commit_id TEXT NOT NULL
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE invocations (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    env_hash TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    cpu_ms REAL NOT NULL,
    peak_memory_bytes INTEGER NOT NULL,
    memory_limit_bytes INTEGER NOT NULL,
    rows_in INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    rows_out INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT
);
CREATE INDEX invocations_started ON invocations (started_at_ms);
"#,
    r#"
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    started_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX runs_started ON runs (started_at_ms);
"#,
    r#"
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE invocations ADD COLUMN kind TEXT NOT NULL DEFAULT 'function';
ALTER TABLE invocations ADD COLUMN bytes_scanned INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
CREATE TABLE functions (
    name TEXT PRIMARY KEY,
    deployed_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    next_at_ms INTEGER NOT NULL,
    lease_until_ms INTEGER,
    error TEXT,
    logs TEXT NOT NULL DEFAULT '',
    commit_id TEXT,
    result TEXT
);
CREATE INDEX events_due ON events (function, state, next_at_ms);
CREATE INDEX events_created ON events (created_at_ms);
"#,
    // 7: where each trigger source got to (a schedule's last slot, an S3 bucket's listing
    // watermark), so a restart picks up where it left off.
    r#"
CREATE TABLE trigger_cursors (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#,
    // 8: where history retention cut each chain of commits, for `basin log`.
    r#"
CREATE TABLE history_cuts (
    commit_id TEXT PRIMARY KEY,
    removed_at_ms INTEGER NOT NULL,
    note TEXT NOT NULL
);
"#,
    // 9: what each maintenance run did (`basin maintenance ls`).
    r#"
CREATE TABLE maintenance_runs (
    id TEXT PRIMARY KEY,
    started_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX maintenance_started ON maintenance_runs (started_at_ms);
"#,
    // 10: the node that ran each event last (several nodes share a catalog), settings the
    // lakehouse fixes once for every node (its warehouse), and leases on work one node does
    // at a time (listing a bucket, scheduled maintenance).
    r#"
ALTER TABLE events ADD COLUMN node TEXT;
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_ms INTEGER NOT NULL
);
-- Claims read live events oldest first: in index order, stopping at the batch's size,
-- instead of sorting every due event of a backlog.
CREATE INDEX events_queue ON events (function, created_at_ms, id)
    WHERE state IN ('pending', 'failed', 'running');
"#,
    // 11: reviews of merges into protected branches, and their approvals.
    r#"
CREATE TABLE reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    author TEXT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    closed_at_ms INTEGER,
    closed_by TEXT,
    merged_commit TEXT
);
CREATE TABLE review_approvals (
    review_id INTEGER NOT NULL,
    principal TEXT NOT NULL,
    source_head TEXT NOT NULL,
    approved_at_ms INTEGER NOT NULL,
    PRIMARY KEY (review_id, principal)
) WITHOUT ROWID;
"#,
    // 12: a token's own grants (a JSON list; NULL: its role's).
    r#"
ALTER TABLE tokens ADD COLUMN grants TEXT;
"#,
    // 13: the audit log (`basin audit ls`).
    r#"
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    principal TEXT NOT NULL,
    door TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at_ms);
"#,
];

#[async_trait]
impl Store for SqlStore {
    async fn initialize(&self) -> Result<()> {
        {
            let mut tx = self.begin().await?;
            let result: Result<_> = async {
                let conn: &mut SqliteConnection = &mut tx;
                let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *conn).await?;
                for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                    sqlx::query(migration).execute(&mut *conn).await?;
                    sqlx::query(&format!("PRAGMA user_version = {}", i + 1)).execute(&mut *conn).await?;
                }
                if read_ref(conn, "main").await?.is_none() {
                    let root = CommitId::generate();
                    sqlx::query(
                        "INSERT INTO commits (id, parent, merge_parent, author, message, created_at_ms, operations, properties) \
                         VALUES (?, NULL, NULL, 'basin', ?, ?, '[]', '{}')",
                    )
                    .bind(root.as_str())
                    .bind(ROOT_MESSAGE)
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query("INSERT INTO refs (name, kind, commit_id) VALUES ('main', 'branch', ?)")
                        .bind(root.as_str())
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }
            .await;
            let value = result?;
            tx.commit().await?;
            Ok(value)
        }
    }
}
