//! The SQLite store: a file for the embedded lakehouse, or memory for tests.
//!
//! Each commit stores the full key -> content map of its tree (copied inside the database with
//! one `INSERT .. SELECT`), so reading any ref is one indexed lookup and creating a branch is
//! one row, whatever the number of tables. The price is rows per commit proportional to the
//! number of keys; compaction of old trees belongs to snapshot expiry.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::commit_rules::{
    ROOT_MESSAGE, Tree, branch_head, check_rebase, children_range, validate_operations,
};
use crate::events::{
    DueEvents, EventCounts, EventFilter, EventRecord, EventsPruned, NewEvent, Settled,
};
use crate::history::{HistoryCut, HistoryPruned, HistoryRetention};
use crate::migrations::MIGRATIONS;
use crate::model::TokenRecord;
use crate::model::{Commit, CommitId, CommitRequest, Content, Key, Operation, Ref, RefKind};
use crate::rows::Records;
use crate::rows::{self, to_json};
use crate::sqlite_events;
use crate::sqlite_history;
use crate::sqlite_records;
use crate::store::Store;
use basin_core::InvocationRecord;
use basin_core::time::now_ms;
use basin_core::{Error, ErrorKind, Result};

#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: SqlitePool,
}

impl SqlStore {
    /// Opens (creating if missing) the SQLite catalog at `path`.
    ///
    /// WAL with `synchronous = FULL`: every transaction (a commit moving a branch, an event
    /// queued or settled) is fsynced to the WAL before it returns. `NORMAL` would only sync
    /// at checkpoints, so a power loss could undo commits and events already acknowledged.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(60));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Store,
                    format!("cannot open the catalog at {}", path.display()),
                )
                .with_source(e)
            })?;
        Ok(Self { pool })
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
        Ok(Self { pool })
    }

    /// Starts a write transaction with `BEGIN IMMEDIATE`, so concurrent writers (threads or
    /// processes) queue on the database's write lock instead of failing mid-transaction.
    /// Dropping it without `commit` (an error, a cancelled future) rolls it back.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

async fn read_ref(conn: &mut SqliteConnection, name: &str) -> Result<Option<Ref>> {
    let row = sqlx::query("SELECT name, kind, commit_id FROM refs WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(rows::ref_row).transpose()
}

#[async_trait]
impl Tree for SqliteConnection {
    async fn content(&mut self, at: &CommitId, key: &Key) -> Result<Option<Content>> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM contents WHERE commit_id = ? AND key = ?")
                .bind(at.as_str())
                .bind(key.as_str())
                .fetch_optional(&mut *self)
                .await?;
        value.as_deref().map(rows::content).transpose()
    }

    async fn children(&mut self, at: &CommitId, namespace: &Key) -> Result<Vec<String>> {
        let (after, before) = children_range(namespace);
        Ok(sqlx::query_scalar(
            "SELECT key FROM contents WHERE commit_id = ? AND key > ? AND key < ?",
        )
        .bind(at.as_str())
        .bind(after)
        .bind(before)
        .fetch_all(&mut *self)
        .await?)
    }
}

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

    async fn list_refs(&self) -> Result<Vec<Ref>> {
        let rows = sqlx::query("SELECT name, kind, commit_id FROM refs ORDER BY kind, name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::ref_row).collect()
    }

    async fn get_ref(&self, name: &str) -> Result<Option<Ref>> {
        let mut conn = self.pool.acquire().await?;
        read_ref(&mut conn, name).await
    }

    async fn create_ref(&self, name: &str, kind: RefKind, at: &CommitId) -> Result<Ref> {
        let (name, at) = (name.to_string(), at.clone());
        {
            let mut tx = self.begin().await?;
            let result: Result<_> = async {
                let conn: &mut SqliteConnection = &mut tx;
                if let Some(existing) = read_ref(conn, &name).await? {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!("a {} named `{name}` already exists", existing.kind.as_str()),
                    ));
                }
                let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM commits WHERE id = ?")
                    .bind(at.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                if exists.is_none() {
                    return Err(Error::not_found(format!("commit `{at}` does not exist")));
                }
                sqlx::query("INSERT INTO refs (name, kind, commit_id) VALUES (?, ?, ?)")
                    .bind(&name)
                    .bind(kind.as_str())
                    .bind(at.as_str())
                    .execute(&mut *conn)
                    .await?;
                Ok(Ref {
                    name,
                    kind,
                    head: at,
                })
            }
            .await;
            let value = result?;
            tx.commit().await?;
            Ok(value)
        }
    }

    async fn delete_ref(&self, name: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM refs WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("no branch or tag named `{name}`")));
        }
        Ok(())
    }

    async fn commit(&self, request: CommitRequest) -> Result<Commit> {
        {
            let mut tx = self.begin().await?;
            let result: Result<_> = async {
                let conn: &mut SqliteConnection = &mut tx;
                let CommitRequest { branch, expected_head, operations, author, message, merge_parent, properties, events } =
                    request;
                let head = branch_head(&branch, read_ref(conn, &branch).await?)?;
                check_rebase(conn, &branch, &expected_head, &head, &operations).await?;
                validate_operations(conn, &head, &operations).await?;

                let commit = Commit {
                    id: CommitId::generate(),
                    parent: Some(head.clone()),
                    merge_parent,
                    author,
                    message,
                    created_at_ms: now_ms(),
                    operations,
                    properties,
                };
                sqlx::query(
                    "INSERT INTO commits (id, parent, merge_parent, author, message, created_at_ms, operations, properties) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(commit.id.as_str())
                .bind(head.as_str())
                .bind(commit.merge_parent.as_ref().map(CommitId::as_str))
                .bind(&commit.author)
                .bind(&commit.message)
                .bind(commit.created_at_ms)
                .bind(to_json(&commit.operations)?)
                .bind(to_json(&commit.properties)?)
                .execute(&mut *conn)
                .await?;
                for parent in std::iter::once(&head).chain(commit.merge_parent.as_ref()) {
                    sqlx::query("INSERT OR IGNORE INTO commit_parents (child, parent) VALUES (?, ?)")
                        .bind(commit.id.as_str())
                        .bind(parent.as_str())
                        .execute(&mut *conn)
                        .await?;
                }
                let touched: Vec<&str> = commit.operations.iter().map(|o| o.key().as_str()).collect();
                sqlx::query(
                    "INSERT INTO contents (commit_id, key, value) SELECT ?, key, value FROM contents \
                     WHERE commit_id = ? AND key NOT IN (SELECT value FROM json_each(?))",
                )
                .bind(commit.id.as_str())
                .bind(head.as_str())
                .bind(to_json(&touched)?)
                .execute(&mut *conn)
                .await?;
                for op in &commit.operations {
                    if let Operation::Put { key, content } = op {
                        sqlx::query("INSERT INTO contents (commit_id, key, value) VALUES (?, ?, ?)")
                            .bind(commit.id.as_str())
                            .bind(key.as_str())
                            .bind(to_json(content)?)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                sqlx::query("UPDATE refs SET commit_id = ? WHERE name = ?")
                    .bind(commit.id.as_str())
                    .bind(&branch)
                    .execute(&mut *conn)
                    .await?;
                sqlite_events::consume(conn, &events, commit.id.as_str(), commit.created_at_ms).await?;
                Ok(commit)
            }
            .await;
            let value = result?;
            tx.commit().await?;
            Ok(value)
        }
    }

    async fn get_commit(&self, id: &CommitId) -> Result<Option<Commit>> {
        let row = sqlx::query("SELECT * FROM commits WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::commit_row).transpose()
    }

    async fn commits_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<CommitId>> {
        let rows =
            sqlx::query("SELECT id FROM commits WHERE id >= ? AND id < ? ORDER BY id LIMIT ?")
                .bind(prefix)
                .bind(format!("{prefix}\u{7f}"))
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| CommitId::from_string(r.get::<String, _>("id")))
            .collect())
    }

    async fn log(&self, from: &CommitId, limit: usize) -> Result<Vec<Commit>> {
        let rows = sqlx::query(
            "WITH RECURSIVE chain(id, n) AS ( \
                SELECT ?, 0 \
                UNION ALL \
                SELECT c.parent, chain.n + 1 FROM commits c JOIN chain ON c.id = chain.id \
                WHERE c.parent IS NOT NULL AND chain.n + 1 < ? \
             ) SELECT commits.* FROM chain JOIN commits ON commits.id = chain.id ORDER BY chain.n",
        )
        .bind(from.as_str())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::commit_row).collect()
    }

    async fn is_ancestor(&self, ancestor: &CommitId, descendant: &CommitId) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "WITH RECURSIVE anc(id) AS ( \
                SELECT ? UNION SELECT p.parent FROM commit_parents p JOIN anc ON p.child = anc.id \
             ) SELECT 1 FROM anc WHERE id = ? LIMIT 1",
        )
        .bind(descendant.as_str())
        .bind(ancestor.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn merge_base(&self, a: &CommitId, b: &CommitId) -> Result<Option<CommitId>> {
        // The common ancestor inserted last: no other common ancestor can descend from it.
        let found: Option<String> = sqlx::query_scalar(
            "WITH RECURSIVE \
                a(id) AS (SELECT ? UNION SELECT p.parent FROM commit_parents p JOIN a ON p.child = a.id), \
                b(id) AS (SELECT ? UNION SELECT p.parent FROM commit_parents p JOIN b ON p.child = b.id) \
             SELECT c.id FROM commits c WHERE c.id IN (SELECT id FROM a) AND c.id IN (SELECT id FROM b) \
             ORDER BY c.seq DESC LIMIT 1",
        )
        .bind(a.as_str())
        .bind(b.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.map(CommitId::from_string))
    }

    async fn contents(&self, at: &CommitId) -> Result<BTreeMap<Key, Content>> {
        let rows = sqlx::query("SELECT key, value FROM contents WHERE commit_id = ? ORDER BY key")
            .bind(at.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    Key::parse(r.try_get("key")?)?,
                    rows::content(r.try_get("value")?)?,
                ))
            })
            .collect()
    }

    async fn all_metadata_locations(&self, except: &[CommitId]) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT value FROM contents \
             WHERE commit_id NOT IN (SELECT value FROM json_each(?))",
        )
        .bind(to_json(&except)?)
        .fetch_all(&self.pool)
        .await?;
        let mut locations = Vec::new();
        for row in &rows {
            let content = rows::content(row.try_get("value")?)?;
            if let Some(location) = content.metadata_location() {
                locations.push(location.to_string());
            }
        }
        Ok(locations)
    }

    async fn prune_history(
        &self,
        retention: &HistoryRetention,
        dry_run: bool,
    ) -> Result<HistoryPruned> {
        let mut tx = self.begin().await?;
        let refs = {
            let conn: &mut SqliteConnection = &mut tx;
            sqlx::query("SELECT name, kind, commit_id FROM refs")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(rows::ref_row)
                .collect::<Result<Vec<_>>>()?
        };
        let pruned = sqlite_history::prune(&mut tx, &refs, retention, dry_run, now_ms()).await?;
        tx.commit().await?;
        Ok(pruned)
    }

    async fn history_cut(&self, at: &CommitId) -> Result<Option<HistoryCut>> {
        sqlite_history::cut(&self.pool, at).await
    }

    async fn content(&self, at: &CommitId, key: &Key) -> Result<Option<Content>> {
        let mut conn = self.pool.acquire().await?;
        conn.content(at, key).await
    }

    async fn record_invocation(&self, r: &InvocationRecord) -> Result<()> {
        sqlite_records::record_invocation(&self.pool, r).await
    }

    async fn invocations(&self, since_ms: i64) -> Result<Vec<InvocationRecord>> {
        sqlite_records::invocations(&self.pool, since_ms).await
    }

    async fn save_run(&self, id: &str, started_at_ms: i64, record: &str) -> Result<()> {
        sqlite_records::save_record(&self.pool, Records::Runs, id, started_at_ms, record).await
    }

    async fn runs(&self, limit: usize) -> Result<Vec<String>> {
        sqlite_records::records(&self.pool, Records::Runs, limit).await
    }

    async fn runs_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        sqlite_records::runs_with_prefix(&self.pool, prefix).await
    }

    async fn delete_runs(&self, ids: &[String]) -> Result<u64> {
        sqlite_records::delete_runs(&self.pool, ids).await
    }

    async fn save_maintenance(&self, id: &str, started_at_ms: i64, record: &str) -> Result<()> {
        sqlite_records::save_record(&self.pool, Records::Maintenance, id, started_at_ms, record)
            .await
    }

    async fn maintenance_runs(&self, limit: usize) -> Result<Vec<String>> {
        sqlite_records::records(&self.pool, Records::Maintenance, limit).await
    }

    async fn delete_maintenance_before(&self, before_ms: i64) -> Result<u64> {
        sqlite_records::delete_maintenance_before(&self.pool, before_ms).await
    }

    async fn enqueue_events(&self, events: &[NewEvent]) -> Result<usize> {
        sqlite_events::enqueue(&self.pool, events, now_ms()).await
    }

    async fn claim_events(
        &self,
        function: &str,
        limit: usize,
        now_ms: i64,
        lease_until_ms: i64,
        node: &str,
    ) -> Result<Vec<EventRecord>> {
        sqlite_events::claim(&self.pool, function, limit, now_ms, lease_until_ms, node).await
    }

    async fn renew_leases(&self, ids: &[String], lease_until_ms: i64) -> Result<()> {
        sqlite_events::renew(&self.pool, ids, lease_until_ms).await
    }

    async fn finish_events(&self, settled: &[Settled]) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        for s in settled {
            sqlite_events::finish(&mut tx, &s.id, s.attempt, &s.outcome, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn due_events(&self, function: &str, now_ms: i64) -> Result<DueEvents> {
        sqlite_events::due(&self.pool, function, now_ms).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        sqlite_events::list(&self.pool, filter).await
    }

    async fn event_counts(&self, function: Option<&str>) -> Result<EventCounts> {
        sqlite_events::counts(&self.pool, function).await
    }

    async fn events_with_prefix(&self, prefix: &str) -> Result<Vec<EventRecord>> {
        sqlite_events::with_prefix(&self.pool, prefix).await
    }

    async fn retry_events(&self, ids: Option<&[String]>) -> Result<usize> {
        sqlite_events::retry(&self.pool, ids, now_ms()).await
    }

    async fn prune_events(&self, before_ms: i64, dry_run: bool) -> Result<EventsPruned> {
        sqlite_events::prune(&self.pool, before_ms, dry_run).await
    }

    async fn save_function(&self, name: &str, record: &str) -> Result<()> {
        sqlite_events::save_function(&self.pool, name, now_ms(), record).await
    }

    async fn cursor(&self, name: &str) -> Result<Option<i64>> {
        sqlite_events::cursor(&self.pool, name).await
    }

    async fn set_cursor(&self, name: &str, value: i64) -> Result<()> {
        sqlite_events::set_cursor(&self.pool, name, value).await
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        // One statement: taking a free lease and renewing one's own are the same upsert, and
        // a lease another holder still holds updates no row.
        let taken = sqlx::query(
            "INSERT INTO leases (name, holder, until_ms) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
             WHERE leases.until_ms <= ? OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(until_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn setting(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn fix_setting(&self, name: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn functions(&self) -> Result<Vec<String>> {
        sqlite_events::functions(&self.pool).await
    }

    async fn delete_function(&self, name: &str) -> Result<()> {
        sqlite_events::delete_function(&self.pool, name).await
    }

    async fn create_token(&self, t: &TokenRecord) -> Result<()> {
        sqlite_records::create_token(&self.pool, t).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        sqlite_records::tokens(&self.pool).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        sqlite_records::token_by_hash(&self.pool, hash).await
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        sqlite_records::delete_token(&self.pool, id).await
    }
}
