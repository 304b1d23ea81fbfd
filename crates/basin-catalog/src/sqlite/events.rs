//! The SQLite side of the event queue and the deployed functions (see [`crate::events`]).
//! Claims are one `BEGIN IMMEDIATE` transaction, so two dispatchers never lease one event.

use async_trait::async_trait;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::SqlStore;
use crate::commit_rules::unconsumable_event;
use crate::events::{
    DueEvents, EventCounts, EventFilter, EventOutcome, EventRecord, EventState, EventsPruned,
    NewEvent, RanCall, Settled, tail,
};
use crate::rows::{event_row, like_prefix};
use crate::store::Queue;
use basin_core::time::now_ms;
use basin_core::{Error, Result};

pub(crate) async fn enqueue(pool: &SqlitePool, events: &[NewEvent], now_ms: i64) -> Result<usize> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut stored = 0;
    for e in events {
        let done = sqlx::query(
            "INSERT OR IGNORE INTO events (id, function, state, payload, max_attempts, created_at_ms, \
             updated_at_ms, next_at_ms) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(&e.function)
        .bind(e.payload.to_string())
        .bind(e.max_attempts.max(1) as i64)
        .bind(now_ms)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        stored += done.rows_affected() as usize;
    }
    tx.commit().await?;
    Ok(stored)
}

/// Stores a synchronous call that already ran, settled, with its metering (see
/// [`Queue::record_call`]): inserted as its claim would leave it, then finished as any
/// attempt is.
pub(crate) async fn record_call(pool: &SqlitePool, call: &RanCall, now_ms: i64) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let e = &call.event;
    sqlx::query(
        "INSERT INTO events (id, function, state, payload, attempts, max_attempts, created_at_ms, \
         updated_at_ms, next_at_ms, node) VALUES (?, ?, 'running', ?, 1, ?, ?, ?, ?, ?)",
    )
    .bind(&e.id)
    .bind(&e.function)
    .bind(e.payload.to_string())
    .bind(e.max_attempts.max(1) as i64)
    .bind(call.created_at_ms)
    .bind(now_ms)
    .bind(now_ms)
    .bind(&call.node)
    .execute(&mut *tx)
    .await?;
    finish(&mut tx, &e.id, 1, &call.outcome, now_ms).await?;
    for invocation in &call.invocations {
        SqlStore::insert_invocation(&mut *tx, invocation).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Leases up to `limit` due events of `function`, oldest first: pending ones, failed ones
/// whose backoff is over, and running ones whose lease ran out (their worker died).
pub(crate) async fn claim(
    pool: &SqlitePool,
    function: &str,
    limit: usize,
    now_ms: i64,
    lease_until_ms: i64,
    node: &str,
) -> Result<Vec<EventRecord>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM events WHERE function = ? AND state IN ('pending', 'failed', 'running') AND \
         ((state IN ('pending', 'failed') AND next_at_ms <= ?) OR (state = 'running' AND lease_until_ms <= ?)) \
         ORDER BY created_at_ms, id LIMIT ?",
    )
    .bind(function)
    .bind(now_ms)
    .bind(now_ms)
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await?;
    let mut claimed = Vec::with_capacity(ids.len());
    for id in &ids {
        let row = sqlx::query(
            "UPDATE events SET state = 'running', attempts = attempts + 1, lease_until_ms = ?, \
             updated_at_ms = ?, node = ? WHERE id = ? RETURNING *",
        )
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(node)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        claimed.push(event_row(&row)?);
    }
    tx.commit().await?;
    Ok(claimed)
}

pub(crate) async fn renew(pool: &SqlitePool, ids: &[String], lease_until_ms: i64) -> Result<()> {
    let ids = serde_json::to_string(ids).map_err(|e| Error::internal(format!("event ids: {e}")))?;
    sqlx::query(
        "UPDATE events SET lease_until_ms = ? \
         WHERE state = 'running' AND id IN (SELECT value FROM json_each(?))",
    )
    .bind(lease_until_ms)
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records how attempt `attempt` ended, unless the event moved on meanwhile: another worker
/// took it after the lease ran out (its `attempts` is higher: this outcome is stale and
/// dropped, whatever it says, so an old failure never overwrites a newer success), or a
/// commit consumed it (a failure is then dropped; a success only adds logs and result).
pub(crate) async fn finish(
    conn: &mut SqliteConnection,
    id: &str,
    attempt: u32,
    outcome: &EventOutcome,
    now_ms: i64,
) -> Result<()> {
    let query = match outcome {
        EventOutcome::Succeeded { logs, result } => sqlx::query(
            "UPDATE events SET state = 'succeeded', lease_until_ms = NULL, error = NULL, logs = ?, \
             result = ?, updated_at_ms = ? WHERE id = ? AND attempts = ? \
             AND state IN ('running', 'succeeded')",
        )
        .bind(tail(logs))
        .bind(result.as_ref().map(|r| r.to_string())),
        EventOutcome::Failed {
            error,
            logs,
            retry_at_ms,
        } => sqlx::query(
            "UPDATE events SET state = ?, lease_until_ms = NULL, error = ?, logs = ?, next_at_ms = ?, \
             updated_at_ms = ? WHERE id = ? AND attempts = ? AND state = 'running' \
             AND commit_id IS NULL",
        )
        .bind(if retry_at_ms.is_some() { "failed" } else { "dead" })
        .bind(error)
        .bind(tail(logs))
        .bind(retry_at_ms.unwrap_or(now_ms)),
    };
    query
        .bind(now_ms)
        .bind(id)
        .bind(i64::from(attempt))
        .execute(conn)
        .await?;
    Ok(())
}

/// Inside a commit's transaction: marks `events` succeeded by `commit_id`. Fails, undoing
/// the commit, when one of them is already in a commit: its output is there already.
pub(crate) async fn consume(
    conn: &mut SqliteConnection,
    events: &[String],
    commit_id: &str,
    now_ms: i64,
) -> Result<()> {
    for id in events {
        let done = sqlx::query(
            "UPDATE events SET state = 'succeeded', commit_id = ?, lease_until_ms = NULL, error = NULL, \
             updated_at_ms = ? WHERE id = ? AND commit_id IS NULL",
        )
        .bind(commit_id)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            let committed: Option<Option<String>> =
                sqlx::query_scalar("SELECT commit_id FROM events WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            return Err(unconsumable_event(id, committed));
        }
    }
    Ok(())
}

/// What of `function`'s queue may run at `now_ms`; the same conditions as [`claim`].
pub(crate) async fn due(pool: &SqlitePool, function: &str, now_ms: i64) -> Result<DueEvents> {
    let row = sqlx::query(
        "WITH e AS (SELECT created_at_ms, \
             CASE WHEN state = 'running' THEN lease_until_ms ELSE next_at_ms END AS at \
           FROM events WHERE function = ?1 AND state IN ('pending', 'failed', 'running')) \
         SELECT count(*) FILTER (WHERE at <= ?2) AS due, \
                min(created_at_ms) FILTER (WHERE at <= ?2) AS oldest, \
                min(at) FILTER (WHERE at > ?2) AS next \
         FROM e",
    )
    .bind(function)
    .bind(now_ms)
    .fetch_one(pool)
    .await?;
    Ok(DueEvents {
        count: row.try_get::<i64, _>("due")? as u64,
        oldest_created_ms: row.try_get("oldest")?,
        next_at_ms: row.try_get("next")?,
    })
}

pub(crate) async fn list(pool: &SqlitePool, filter: &EventFilter) -> Result<Vec<EventRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM events WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR function = ?2) \
         ORDER BY created_at_ms DESC, id DESC LIMIT ?3",
    )
    .bind(filter.state.map(EventState::as_str))
    .bind(filter.function.as_deref())
    .bind(filter.limit.max(1) as i64)
    .fetch_all(pool)
    .await?;
    rows.iter().map(event_row).collect()
}

pub(crate) async fn counts(pool: &SqlitePool, function: Option<&str>) -> Result<EventCounts> {
    let rows = sqlx::query(
        "SELECT state, count(*) AS n FROM events WHERE (?1 IS NULL OR function = ?1) GROUP BY state",
    )
    .bind(function)
    .fetch_all(pool)
    .await?;
    let mut counts = EventCounts::default();
    for row in rows {
        counts.set(row.try_get("state")?, row.try_get::<i64, _>("n")? as u64);
    }
    Ok(counts)
}

/// Events whose id starts with `prefix` (at most 2, to detect ambiguity).
pub(crate) async fn with_prefix(pool: &SqlitePool, prefix: &str) -> Result<Vec<EventRecord>> {
    let rows = sqlx::query("SELECT * FROM events WHERE id LIKE ? ORDER BY id LIMIT 2")
        .bind(like_prefix(prefix))
        .fetch_all(pool)
        .await?;
    rows.iter().map(event_row).collect()
}

/// Makes failed or dead events (`ids`, or every dead one) pending again, with fresh attempts.
pub(crate) async fn retry(pool: &SqlitePool, ids: Option<&[String]>, now_ms: i64) -> Result<usize> {
    const SET: &str = "UPDATE events SET state = 'pending', attempts = 0, next_at_ms = ?, \
                       lease_until_ms = NULL, updated_at_ms = ?";
    let done =
        match ids {
            None => {
                sqlx::query(&format!("{SET} WHERE state = 'dead'"))
                    .bind(now_ms)
                    .bind(now_ms)
                    .execute(pool)
                    .await?
            }
            Some(ids) => sqlx::query(&format!(
                "{SET} WHERE id IN (SELECT value FROM json_each(?)) AND state IN ('failed', 'dead')"
            ))
            .bind(now_ms)
            .bind(now_ms)
            .bind(serde_json::to_string(ids)?)
            .execute(pool)
            .await?,
        };
    Ok(done.rows_affected() as usize)
}

/// Which succeeded events a prune deletes: all but object events, whose row is what dedupes
/// the object (its id is the function and the object's version).
const DELIVERED_ONCE: &str = "json_extract(payload, '$.type') IS NOT 'object_created'";

pub(crate) async fn prune(
    pool: &SqlitePool,
    before_ms: i64,
    dry_run: bool,
) -> Result<EventsPruned> {
    let settled = "state = 'succeeded' AND updated_at_ms < ?";
    let slim = "(logs != '' OR result IS NOT NULL)";
    let removed_filter = format!("{settled} AND {DELIVERED_ONCE}");
    let slimmed_filter = format!("{settled} AND NOT ({DELIVERED_ONCE}) AND {slim}");
    let (removed, slimmed) = if dry_run {
        let mut counts = [0u64; 2];
        for (i, filter) in [&removed_filter, &slimmed_filter].into_iter().enumerate() {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM events WHERE {filter}"))
                .bind(before_ms)
                .fetch_one(pool)
                .await?;
            counts[i] = n as u64;
        }
        (counts[0], counts[1])
    } else {
        let removed = sqlx::query(&format!("DELETE FROM events WHERE {removed_filter}"))
            .bind(before_ms)
            .execute(pool)
            .await?
            .rows_affected();
        let slimmed = sqlx::query(&format!(
            "UPDATE events SET logs = '', result = NULL WHERE {slimmed_filter}"
        ))
        .bind(before_ms)
        .execute(pool)
        .await?
        .rows_affected();
        (removed, slimmed)
    };
    Ok(EventsPruned { removed, slimmed })
}

pub(crate) async fn save_function(
    pool: &SqlitePool,
    name: &str,
    now_ms: i64,
    record: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO functions (name, deployed_at_ms, record) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET deployed_at_ms = excluded.deployed_at_ms, record = excluded.record",
    )
    .bind(name)
    .bind(now_ms)
    .bind(record)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn functions(pool: &SqlitePool) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT record FROM functions ORDER BY name")
            .fetch_all(pool)
            .await?,
    )
}

pub(crate) async fn cursor(pool: &SqlitePool, name: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM trigger_cursors WHERE name = ?")
            .bind(name)
            .fetch_optional(pool)
            .await?,
    )
}

pub(crate) async fn set_cursor(pool: &SqlitePool, name: &str, value: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO trigger_cursors (name, value) VALUES (?, ?) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name)
    .bind(value)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn delete_function(pool: &SqlitePool, name: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM trigger_cursors WHERE name = ?")
        .bind(format!("schedule:{name}"))
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM functions WHERE name = ?")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found(format!("no deployed function `{name}`"))
            .with_hint("see the deployed ones with `basin functions ls`"));
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl Queue for SqlStore {
    async fn enqueue_events(&self, events: &[NewEvent]) -> Result<usize> {
        super::events::enqueue(&self.pool, events, now_ms()).await
    }

    async fn claim_events(
        &self,
        function: &str,
        limit: usize,
        now_ms: i64,
        lease_until_ms: i64,
        node: &str,
    ) -> Result<Vec<EventRecord>> {
        super::events::claim(&self.pool, function, limit, now_ms, lease_until_ms, node).await
    }

    async fn renew_leases(&self, ids: &[String], lease_until_ms: i64) -> Result<()> {
        super::events::renew(&self.pool, ids, lease_until_ms).await
    }

    async fn finish_events(&self, settled: &[Settled]) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        for s in settled {
            super::events::finish(&mut tx, &s.id, s.attempt, &s.outcome, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_call(&self, call: &RanCall) -> Result<()> {
        super::events::record_call(&self.relaxed, call, now_ms()).await
    }

    async fn due_events(&self, function: &str, now_ms: i64) -> Result<DueEvents> {
        super::events::due(&self.pool, function, now_ms).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        super::events::list(&self.pool, filter).await
    }

    async fn event_counts(&self, function: Option<&str>) -> Result<EventCounts> {
        super::events::counts(&self.pool, function).await
    }

    async fn events_with_prefix(&self, prefix: &str) -> Result<Vec<EventRecord>> {
        super::events::with_prefix(&self.pool, prefix).await
    }

    async fn retry_events(&self, ids: Option<&[String]>) -> Result<usize> {
        super::events::retry(&self.pool, ids, now_ms()).await
    }

    async fn prune_events(&self, before_ms: i64, dry_run: bool) -> Result<EventsPruned> {
        super::events::prune(&self.pool, before_ms, dry_run).await
    }

    async fn save_function(&self, name: &str, record: &str) -> Result<()> {
        super::events::save_function(&self.pool, name, now_ms(), record).await
    }

    async fn cursor(&self, name: &str) -> Result<Option<i64>> {
        super::events::cursor(&self.pool, name).await
    }

    async fn set_cursor(&self, name: &str, value: i64) -> Result<()> {
        super::events::set_cursor(&self.pool, name, value).await
    }

    async fn functions(&self) -> Result<Vec<String>> {
        super::events::functions(&self.pool).await
    }

    async fn delete_function(&self, name: &str) -> Result<()> {
        super::events::delete_function(&self.pool, name).await
    }
}
