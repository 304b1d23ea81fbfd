//! The Postgres store: one catalog shared by several Basin nodes.
//!
//! The tables are SQLite's (see `postgres_migrations.rs`) and so is every rule: the commit
//! checks live in `commit_rules.rs`, the row mapping in `rows.rs`. What differs is how
//! writers on different nodes are kept apart. Every connection runs at READ COMMITTED
//! (set when it opens, whatever the server's or the role's default), and writes take row
//! locks where two nodes could meet:
//!
//! - a commit locks its branch's row (`SELECT .. FOR UPDATE`) before it reads the head. A
//!   second commit to that branch waits there until the first one ends, then reads the head
//!   the first one moved to (READ COMMITTED hands a waiting `FOR UPDATE` the row's newest
//!   version, and each later statement sees everything committed before it starts) and
//!   re-bases onto it by the rule SQLite applies. No update is lost and no commit needs a
//!   retry: the lock queues them, as SQLite's `BEGIN IMMEDIATE` does.
//! - the events a commit consumes are updated `WHERE commit_id IS NULL`, in id order; a
//!   second commit consuming one of them waits for the first, then finds it taken and fails.
//! - a history prune locks `refs` against writes (`SHARE ROW EXCLUSIVE`) while it plans and
//!   removes, and creating a ref takes the lock that conflicts with it before checking its
//!   commit exists: a ref is never made on a commit being removed.
//! - the queue claims with `FOR UPDATE SKIP LOCKED` (see `postgres_events.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};

use crate::commit_rules::{ROOT_MESSAGE, Tree};
use crate::events::{
    DueEvents, EventCounts, EventFilter, EventRecord, EventsPruned, NewEvent, Settled,
};
use crate::history::{HistoryCut, HistoryPruned, HistoryRetention};
use crate::model::TokenRecord;
use crate::model::{Commit, CommitId, CommitRequest, Content, Key, Ref, RefKind};
use crate::postgres_commits::{self as commits, read_ref};
use crate::postgres_events::{self as events, EventWakeups};
use crate::postgres_history;
use crate::postgres_migrations::MIGRATIONS;
use crate::postgres_records as records;
use crate::rows::{self, Records};
use crate::store::Store;
use basin_core::InvocationRecord;
use basin_core::time::now_ms;
use basin_core::{Error, ErrorKind, Result};

/// Connections per node: commits, claims and reads in flight at once, plus one per
/// [`PgStore::listen`].
const MAX_CONNECTIONS: u32 = 10;

/// The advisory lock `initialize` holds while it migrates ("basin" and 1), so two nodes
/// starting at once do not both create the schema.
const SCHEMA_LOCK: i64 = 0x6261_7369_6e00_0001;

/// The catalog in a Postgres database, shared by every node given the same URL.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The URL without its password, for messages.
    shown: String,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore").field("url", &self.shown).finish()
    }
}

impl PgStore {
    /// Connects to the catalog database at `url` (`postgres://USER:PASSWORD@HOST:PORT/DB`;
    /// what the URL leaves out comes from the `PG*` environment variables, as with `psql`).
    /// Call [`Store::initialize`] before use.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let shown = redact(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            Error::invalid(format!("`{shown}` is not a Postgres URL"))
                .with_hint("write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE")
                .with_source(e)
        })?;
        // One connection first, to report what is wrong at once: the pool would retry a
        // refused connection until its timeout, then report only the timeout.
        let probe = PgConnection::connect_with(&options)
            .await
            .map_err(|e| cannot_connect(&shown, e))?;
        probe.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // What the locking in this module is reasoned for (see above). Higher
                    // levels would turn a claim's re-check of a row another node changed
                    // into a serialization error.
                    conn.execute(
                        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(PgStore { pool, shown })
    }

    /// Wakes when another node (or this one) queues or retries events: each wake-up names
    /// the function they are for. Holds one connection of the pool. A wake-up is a hint:
    /// one sent while the connection was lost is gone, so a dispatcher still looks at
    /// [`Store::due_events`] now and then.
    pub async fn listen(&self) -> Result<EventWakeups> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(events::CHANNEL).await?;
        Ok(EventWakeups::new(listener))
    }

    /// The plan Postgres runs to claim events, as `EXPLAIN` prints it: the generic plan,
    /// which a prepared statement switches to after a few runs, so it must stay an index
    /// scan. For tests, and for checking a production database by hand.
    pub async fn explain_claim(&self) -> Result<String> {
        // A connection of its own, closed after: the session settings go with it.
        let mut conn = self.pool.acquire().await?.detach();
        let prepare = format!(
            "SET plan_cache_mode = force_generic_plan; \
             PREPARE basin_claim (text, bigint, bigint, bigint, text) AS {}",
            events::claim_sql()
        );
        sqlx::raw_sql(&prepare).execute(&mut conn).await?;
        let lines = sqlx::raw_sql("EXPLAIN EXECUTE basin_claim('', 0, 1, 0, '')")
            .fetch_all(&mut conn)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        conn.close().await?;
        Ok(lines.join("\n"))
    }
}

/// `url` without its password (in the authority or as `?password=`), for messages.
fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "the catalog URL".to_string();
    };
    let _ = parsed.set_password(None);
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(key, _)| key != "password")
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    parsed.to_string()
}

fn cannot_connect(shown: &str, e: sqlx::Error) -> Error {
    let code = e
        .as_database_error()
        .and_then(|db| db.code())
        .map(|c| c.into_owned());
    let hint = match code.as_deref() {
        Some("28P01" | "28000") => "check the user and password (in the URL, or PGPASSWORD)",
        Some("3D000") => "create the database first (`createdb NAME`), or name another one",
        _ if matches!(e, sqlx::Error::Tls(_)) => {
            "check `sslmode` in the URL against the server's TLS settings"
        }
        _ => "check that Postgres runs at that host and port and accepts connections from here",
    };
    Error::new(
        ErrorKind::Store,
        format!("cannot connect to the catalog at {shown}"),
    )
    .with_hint(hint)
    .with_source(e)
}

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
        let mut tx = self.pool.begin().await?;
        // The lock every write to `refs` takes, taken first: a running history prune
        // finishes before this checks that `at` exists (see the module docs).
        sqlx::query("LOCK TABLE refs IN ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let taken = |existing: Ref| {
            Error::new(
                ErrorKind::AlreadyExists,
                format!("a {} named `{name}` already exists", existing.kind.as_str()),
            )
        };
        if let Some(existing) = read_ref(&mut tx, name).await? {
            return Err(taken(existing));
        }
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM commits WHERE id = $1")
            .bind(at.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(Error::not_found(format!("commit `{at}` does not exist")));
        }
        let done = sqlx::query(
            "INSERT INTO refs (name, kind, commit_id) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(kind.as_str())
        .bind(at.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Another node created it since we looked.
            drop(tx);
            let existing = self.get_ref(name).await?;
            return Err(existing.map_or_else(
                || Error::new(ErrorKind::AlreadyExists, format!("`{name}` already exists")),
                taken,
            ));
        }
        tx.commit().await?;
        Ok(Ref {
            name: name.to_string(),
            kind,
            head: at.clone(),
        })
    }

    async fn delete_ref(&self, name: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM refs WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("no branch or tag named `{name}`")));
        }
        Ok(())
    }

    async fn commit(&self, request: CommitRequest) -> Result<Commit> {
        let mut tx = self.pool.begin().await?;
        let commit = commits::commit(&mut tx, request).await?;
        tx.commit().await?;
        Ok(commit)
    }

    async fn get_commit(&self, id: &CommitId) -> Result<Option<Commit>> {
        commits::get_commit(&self.pool, id).await
    }

    async fn commits_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<CommitId>> {
        commits::commits_with_prefix(&self.pool, prefix, limit).await
    }

    async fn log(&self, from: &CommitId, limit: usize) -> Result<Vec<Commit>> {
        commits::log(&self.pool, from, limit).await
    }

    async fn is_ancestor(&self, ancestor: &CommitId, descendant: &CommitId) -> Result<bool> {
        commits::is_ancestor(&self.pool, ancestor, descendant).await
    }

    async fn merge_base(&self, a: &CommitId, b: &CommitId) -> Result<Option<CommitId>> {
        commits::merge_base(&self.pool, a, b).await
    }

    async fn contents(&self, at: &CommitId) -> Result<BTreeMap<Key, Content>> {
        commits::contents(&self.pool, at).await
    }

    async fn all_metadata_locations(&self, except: &[CommitId]) -> Result<Vec<String>> {
        commits::all_metadata_locations(&self.pool, except).await
    }

    async fn prune_history(
        &self,
        retention: &HistoryRetention,
        dry_run: bool,
    ) -> Result<HistoryPruned> {
        let mut tx = self.pool.begin().await?;
        let pruned = postgres_history::prune(&mut tx, retention, dry_run, now_ms()).await?;
        tx.commit().await?;
        Ok(pruned)
    }

    async fn history_cut(&self, at: &CommitId) -> Result<Option<HistoryCut>> {
        postgres_history::cut(&self.pool, at).await
    }

    async fn content(&self, at: &CommitId, key: &Key) -> Result<Option<Content>> {
        let mut conn = self.pool.acquire().await?;
        conn.content(at, key).await
    }

    async fn record_invocation(&self, r: &InvocationRecord) -> Result<()> {
        records::record_invocation(&self.pool, r).await
    }

    async fn invocations(&self, since_ms: i64) -> Result<Vec<InvocationRecord>> {
        records::invocations(&self.pool, since_ms).await
    }

    async fn save_run(&self, id: &str, started_at_ms: i64, record: &str) -> Result<()> {
        records::save_record(&self.pool, Records::Runs, id, started_at_ms, record).await
    }

    async fn runs(&self, limit: usize) -> Result<Vec<String>> {
        records::records(&self.pool, Records::Runs, limit).await
    }

    async fn runs_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        records::runs_with_prefix(&self.pool, prefix).await
    }

    async fn delete_runs(&self, ids: &[String]) -> Result<u64> {
        records::delete_runs(&self.pool, ids).await
    }

    async fn save_maintenance(&self, id: &str, started_at_ms: i64, record: &str) -> Result<()> {
        records::save_record(&self.pool, Records::Maintenance, id, started_at_ms, record).await
    }

    async fn maintenance_runs(&self, limit: usize) -> Result<Vec<String>> {
        records::records(&self.pool, Records::Maintenance, limit).await
    }

    async fn delete_maintenance_before(&self, before_ms: i64) -> Result<u64> {
        records::delete_maintenance_before(&self.pool, before_ms).await
    }

    async fn create_token(&self, t: &TokenRecord) -> Result<()> {
        records::create_token(&self.pool, t).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        records::tokens(&self.pool).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        records::token_by_hash(&self.pool, hash).await
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        records::delete_token(&self.pool, id).await
    }

    async fn enqueue_events(&self, new: &[NewEvent]) -> Result<usize> {
        events::enqueue(&self.pool, new, now_ms()).await
    }

    async fn claim_events(
        &self,
        function: &str,
        limit: usize,
        now_ms: i64,
        lease_until_ms: i64,
        node: &str,
    ) -> Result<Vec<EventRecord>> {
        events::claim(&self.pool, function, limit, now_ms, lease_until_ms, node).await
    }

    async fn event_wakeups(&self) -> Result<Option<EventWakeups>> {
        self.listen().await.map(Some)
    }

    async fn renew_leases(&self, ids: &[String], lease_until_ms: i64) -> Result<()> {
        events::renew(&self.pool, ids, lease_until_ms).await
    }

    async fn finish_events(&self, settled: &[Settled]) -> Result<()> {
        // In id order, as commits consume events: two batches settling the same events
        // wait for each other instead of deadlocking.
        let mut ordered: Vec<&Settled> = settled.iter().collect();
        ordered.sort_by(|a, b| a.id.cmp(&b.id));
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        for s in ordered {
            events::finish(&mut tx, &s.id, s.attempt, &s.outcome, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn due_events(&self, function: &str, now_ms: i64) -> Result<DueEvents> {
        events::due(&self.pool, function, now_ms).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        events::list(&self.pool, filter).await
    }

    async fn event_counts(&self, function: Option<&str>) -> Result<EventCounts> {
        events::counts(&self.pool, function).await
    }

    async fn events_with_prefix(&self, prefix: &str) -> Result<Vec<EventRecord>> {
        events::with_prefix(&self.pool, prefix).await
    }

    async fn retry_events(&self, ids: Option<&[String]>) -> Result<usize> {
        events::retry(&self.pool, ids, now_ms()).await
    }

    async fn prune_events(&self, before_ms: i64, dry_run: bool) -> Result<EventsPruned> {
        events::prune(&self.pool, before_ms, dry_run).await
    }

    async fn save_function(&self, name: &str, record: &str) -> Result<()> {
        events::save_function(&self.pool, name, now_ms(), record).await
    }

    async fn cursor(&self, name: &str) -> Result<Option<i64>> {
        events::cursor(&self.pool, name).await
    }

    async fn set_cursor(&self, name: &str, value: i64) -> Result<()> {
        events::set_cursor(&self.pool, name, value).await
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
            "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
             WHERE leases.until_ms <= $4 OR leases.holder = excluded.holder",
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
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn setting(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn fix_setting(&self, name: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn functions(&self) -> Result<Vec<String>> {
        events::functions(&self.pool).await
    }

    async fn delete_function(&self, name: &str) -> Result<()> {
        events::delete_function(&self.pool, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_url_in_a_message_has_no_password() {
        assert_eq!(
            redact("postgres://basin:s3cret@db.internal:5433/lake?sslmode=require"),
            "postgres://basin@db.internal:5433/lake?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://db/lake?user=basin&password=s3cret&application_name=x"),
            "postgresql://db/lake?user=basin&application_name=x"
        );
        assert!(!redact("postgres://basin:s3cret@[::1").contains("s3cret"));
    }
}
