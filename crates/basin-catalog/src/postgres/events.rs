//! The Postgres side of the event queue and the deployed functions (see [`crate::events`]).
//!
//! Several nodes claim from one queue. A claim locks the rows it takes with
//! `FOR UPDATE SKIP LOCKED`: a second node claiming at the same moment skips them instead of
//! waiting, and a row another node claimed and committed meanwhile is checked again against
//! the claim's conditions (its lease now runs), so no event is leased twice. Outcomes are
//! fenced by the attempt number, as in SQLite. Queuing or retrying events notifies
//! [`CHANNEL`] with the function's name, in the same transaction, so idle nodes wake when
//! it commits.

use std::collections::BTreeSet;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};

use super::PgStore;
use crate::commit_rules::unconsumable_event;
use crate::events::{
    DueEvents, EventCounts, EventFilter, EventOutcome, EventRecord, EventState, EventWakeups,
    EventsPruned, NewEvent, RanCall, Settled, tail,
};
use crate::rows::{event_row, like_prefix};
use crate::store::Queue;
use basin_core::time::now_ms;
use basin_core::{Error, Result};

/// The channel `NOTIFY` wakes listeners on; the payload is a function's name.
const CHANNEL: &str = "basin_events";

/// The columns of `events` (as `e`) that [`event_row`] reads.
const EVENT_COLUMNS: &str = "e.id, e.function, e.state, e.payload::text AS payload, e.attempts, \
     e.max_attempts, e.created_at_ms, e.updated_at_ms, e.next_at_ms, e.lease_until_ms, e.error, \
     e.logs, e.commit_id, e.result::text AS result, e.node";

/// Wakes the listeners of `functions` when the transaction commits.
async fn notify(conn: &mut PgConnection, functions: BTreeSet<String>) -> Result<()> {
    if functions.is_empty() {
        return Ok(());
    }
    let functions: Vec<String> = functions.into_iter().collect();
    sqlx::query("SELECT pg_notify($1, f) FROM unnest($2::text[]) AS f")
        .bind(CHANNEL)
        .bind(&functions)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn enqueue(pool: &PgPool, events: &[NewEvent], now_ms: i64) -> Result<usize> {
    let mut ids = Vec::with_capacity(events.len());
    let mut functions = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    let mut max_attempts = Vec::with_capacity(events.len());
    for e in events {
        ids.push(e.id.as_str());
        functions.push(e.function.as_str());
        payloads.push(e.payload.to_string());
        max_attempts.push(e.max_attempts.max(1) as i64);
    }
    let mut tx = pool.begin().await?;
    // One statement for the batch; an id seen before (or twice in it) is skipped.
    let stored: Vec<String> = sqlx::query_scalar(
        "INSERT INTO events (id, function, state, payload, max_attempts, created_at_ms, \
         updated_at_ms, next_at_ms) \
         SELECT id, function, 'pending', payload::jsonb, max_attempts, $5, $5, $5 \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) \
             AS n(id, function, payload, max_attempts) \
         ON CONFLICT (id) DO NOTHING RETURNING function",
    )
    .bind(&ids)
    .bind(&functions)
    .bind(&payloads)
    .bind(&max_attempts)
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await?;
    let count = stored.len();
    notify(&mut tx, stored.into_iter().collect()).await?;
    tx.commit().await?;
    Ok(count)
}

/// Stores a synchronous call that already ran, settled, with its metering (see
/// [`Queue::record_call`]): inserted as its claim would leave it, then finished as any
/// attempt is, in a transaction that does not wait for the disk.
pub(crate) async fn record_call(store: &PgStore, call: &RanCall, now_ms: i64) -> Result<()> {
    let mut tx = store.begin_relaxed().await?;
    let e = &call.event;
    sqlx::query(
        "INSERT INTO events (id, function, state, payload, attempts, max_attempts, created_at_ms, \
         updated_at_ms, next_at_ms, node) VALUES ($1, $2, 'running', $3::jsonb, 1, $4, $5, $6, $6, $7)",
    )
    .bind(&e.id)
    .bind(&e.function)
    .bind(e.payload.to_string())
    .bind(e.max_attempts.max(1) as i64)
    .bind(call.created_at_ms)
    .bind(now_ms)
    .bind(&call.node)
    .execute(&mut *tx)
    .await?;
    finish(&mut tx, &e.id, 1, &call.outcome, now_ms).await?;
    for invocation in &call.invocations {
        PgStore::insert_invocation(&mut *tx, invocation).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The claim: up to `$3` due events of function `$1` at `$2`, oldest first, leased until
/// `$4`. Due: pending ones, failed ones whose backoff is over, and running ones whose lease
/// ran out (their worker died).
///
/// The ids are picked in a CTE with `LIMIT` and `FOR UPDATE SKIP LOCKED`, then updated by
/// a join. Written as `WHERE id IN (SELECT .. LIMIT n)` it can get a generic plan that
/// scans the table; this form keeps the index. The redundant `state IN (...)` lets the
/// planner prove the partial index `events_queue` (live events by function, created_at_ms,
/// id) applies, so the CTE reads events in claim order and stops at `$3`: without it, with
/// 20,000 events of one function queued, both the generic and the custom plans sorted every
/// due event (7 to 18 ms a claim; 0.03 to 0.5 ms with it, measured on Postgres 15). `EXPLAIN`
/// of the generic plan (see [`crate::PgStore::explain_claim`] and its test): `Update on
/// events e` over a `Nested Loop` of the CTE (`Limit` -> `LockRows` -> `Index Scan using
/// events_queue`) and an `Index Scan using events_pkey`.
fn claim_sql() -> String {
    format!(
        "WITH due AS ( \
            SELECT id FROM events \
            WHERE function = $1 AND state IN ('pending', 'failed', 'running') \
              AND ((state IN ('pending', 'failed') AND next_at_ms <= $2) \
                   OR (state = 'running' AND lease_until_ms <= $2)) \
            ORDER BY created_at_ms, id \
            LIMIT $3 \
            FOR UPDATE SKIP LOCKED \
         ) \
         UPDATE events e SET state = 'running', attempts = e.attempts + 1, \
             lease_until_ms = $4, updated_at_ms = $2, node = $5 \
         FROM due WHERE e.id = due.id \
         RETURNING {EVENT_COLUMNS}"
    )
}

pub(crate) async fn claim(
    pool: &PgPool,
    function: &str,
    limit: usize,
    now_ms: i64,
    lease_until_ms: i64,
    node: &str,
) -> Result<Vec<EventRecord>> {
    let rows = sqlx::query(&claim_sql())
        .bind(function)
        .bind(now_ms)
        .bind(limit as i64)
        .bind(lease_until_ms)
        .bind(node)
        .fetch_all(pool)
        .await?;
    let mut claimed = rows.iter().map(event_row).collect::<Result<Vec<_>>>()?;
    // RETURNING follows no order; the claim's is oldest first.
    claimed.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    Ok(claimed)
}

pub(crate) async fn renew(pool: &PgPool, ids: &[String], lease_until_ms: i64) -> Result<()> {
    sqlx::query(
        "UPDATE events SET lease_until_ms = $1 WHERE state = 'running' AND id = ANY($2::text[])",
    )
    .bind(lease_until_ms)
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records how attempt `attempt` ended, unless the event moved on meanwhile (the rules of
/// `sqlite_finish`): a newer attempt took it, or a commit consumed it.
pub(crate) async fn finish(
    conn: &mut PgConnection,
    id: &str,
    attempt: u32,
    outcome: &EventOutcome,
    now_ms: i64,
) -> Result<()> {
    let query = match outcome {
        EventOutcome::Succeeded { logs, result } => sqlx::query(
            "UPDATE events SET state = 'succeeded', lease_until_ms = NULL, error = NULL, \
             logs = $4, result = $5::jsonb, updated_at_ms = $1 WHERE id = $2 AND attempts = $3 \
             AND state IN ('running', 'succeeded')",
        )
        .bind(now_ms)
        .bind(id)
        .bind(i64::from(attempt))
        .bind(tail(logs))
        .bind(result.as_ref().map(|r| r.to_string())),
        EventOutcome::Failed {
            error,
            logs,
            retry_at_ms,
        } => sqlx::query(
            "UPDATE events SET state = $4, lease_until_ms = NULL, error = $5, logs = $6, \
             next_at_ms = $7, updated_at_ms = $1 WHERE id = $2 AND attempts = $3 \
             AND state = 'running' AND commit_id IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .bind(i64::from(attempt))
        .bind(if retry_at_ms.is_some() {
            "failed"
        } else {
            "dead"
        })
        .bind(error)
        .bind(tail(logs))
        .bind(retry_at_ms.unwrap_or(now_ms)),
    };
    query.execute(conn).await?;
    Ok(())
}

/// Inside a commit's transaction: marks `events` succeeded by `commit_id`. Fails, undoing
/// the commit, when one of them is already in a commit. In id order, so two commits
/// consuming the same events wait for each other instead of deadlocking; the second finds
/// them taken.
pub(crate) async fn consume(
    conn: &mut PgConnection,
    events: &[String],
    commit_id: &str,
    now_ms: i64,
) -> Result<()> {
    let mut ids: Vec<&String> = events.iter().collect();
    ids.sort();
    for id in ids {
        let done = sqlx::query(
            "UPDATE events SET state = 'succeeded', commit_id = $1, lease_until_ms = NULL, \
             error = NULL, updated_at_ms = $2 WHERE id = $3 AND commit_id IS NULL",
        )
        .bind(commit_id)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            let stored_by: Option<Option<String>> =
                sqlx::query_scalar("SELECT commit_id FROM events WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            return Err(unconsumable_event(id, stored_by));
        }
    }
    Ok(())
}

/// What of `function`'s queue may run at `now_ms`; the same conditions as the claim.
pub(crate) async fn due(pool: &PgPool, function: &str, now_ms: i64) -> Result<DueEvents> {
    let row = sqlx::query(
        "WITH e AS (SELECT created_at_ms, \
             CASE WHEN state = 'running' THEN lease_until_ms ELSE next_at_ms END AS at \
           FROM events WHERE function = $1 AND state IN ('pending', 'failed', 'running')) \
         SELECT count(*) FILTER (WHERE at <= $2) AS due, \
                min(created_at_ms) FILTER (WHERE at <= $2) AS oldest, \
                min(at) FILTER (WHERE at > $2) AS next \
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

pub(crate) async fn list(pool: &PgPool, filter: &EventFilter) -> Result<Vec<EventRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e \
         WHERE ($1::text IS NULL OR e.state = $1) AND ($2::text IS NULL OR e.function = $2) \
         ORDER BY e.created_at_ms DESC, e.id DESC LIMIT $3"
    ))
    .bind(filter.state.map(EventState::as_str))
    .bind(filter.function.as_deref())
    .bind(filter.limit.max(1) as i64)
    .fetch_all(pool)
    .await?;
    rows.iter().map(event_row).collect()
}

pub(crate) async fn counts(pool: &PgPool, function: Option<&str>) -> Result<EventCounts> {
    let rows = sqlx::query(
        "SELECT state, count(*) AS n FROM events WHERE ($1::text IS NULL OR function = $1) \
         GROUP BY state",
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

/// Events whose id starts with `prefix` (at most 2, to detect ambiguity). `ILIKE` without
/// an escape character matches as SQLite's `LIKE` does.
pub(crate) async fn with_prefix(pool: &PgPool, prefix: &str) -> Result<Vec<EventRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.id ILIKE $1 ESCAPE '' ORDER BY e.id LIMIT 2"
    ))
    .bind(like_prefix(prefix))
    .fetch_all(pool)
    .await?;
    rows.iter().map(event_row).collect()
}

/// Makes failed or dead events (`ids`, or every dead one) pending again, with fresh
/// attempts, and wakes their functions' listeners.
pub(crate) async fn retry(pool: &PgPool, ids: Option<&[String]>, now_ms: i64) -> Result<usize> {
    const SET: &str = "UPDATE events SET state = 'pending', attempts = 0, next_at_ms = $1, \
                       lease_until_ms = NULL, updated_at_ms = $1";
    let mut tx = pool.begin().await?;
    let functions: Vec<String> = match ids {
        None => {
            sqlx::query_scalar(&format!("{SET} WHERE state = 'dead' RETURNING function"))
                .bind(now_ms)
                .fetch_all(&mut *tx)
                .await?
        }
        Some(ids) => {
            sqlx::query_scalar(&format!(
                "{SET} WHERE id = ANY($2::text[]) AND state IN ('failed', 'dead') \
                 RETURNING function"
            ))
            .bind(now_ms)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?
        }
    };
    let count = functions.len();
    notify(&mut tx, functions.into_iter().collect()).await?;
    tx.commit().await?;
    Ok(count)
}

/// Which succeeded events a prune deletes: all but object events, whose row is what dedupes
/// the object (its id is the function and the object's version).
const DELIVERED_ONCE: &str = "(payload->>'type') IS DISTINCT FROM 'object_created'";

pub(crate) async fn prune(pool: &PgPool, before_ms: i64, dry_run: bool) -> Result<EventsPruned> {
    let settled = "state = 'succeeded' AND updated_at_ms < $1";
    let slim = "(logs <> '' OR result IS NOT NULL)";
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
    pool: &PgPool,
    name: &str,
    now_ms: i64,
    record: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO functions (name, deployed_at_ms, record) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET deployed_at_ms = excluded.deployed_at_ms, \
         record = excluded.record",
    )
    .bind(name)
    .bind(now_ms)
    .bind(record)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn functions(pool: &PgPool) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT record FROM functions ORDER BY name")
            .fetch_all(pool)
            .await?,
    )
}

pub(crate) async fn cursor(pool: &PgPool, name: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM trigger_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?,
    )
}

pub(crate) async fn set_cursor(pool: &PgPool, name: &str, value: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO trigger_cursors (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name)
    .bind(value)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn delete_function(pool: &PgPool, name: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM trigger_cursors WHERE name = $1")
        .bind(format!("schedule:{name}"))
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM functions WHERE name = $1")
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
impl Queue for PgStore {
    async fn enqueue_events(&self, new: &[NewEvent]) -> Result<usize> {
        enqueue(&self.pool, new, now_ms()).await
    }

    async fn claim_events(
        &self,
        function: &str,
        limit: usize,
        now_ms: i64,
        lease_until_ms: i64,
        node: &str,
    ) -> Result<Vec<EventRecord>> {
        claim(&self.pool, function, limit, now_ms, lease_until_ms, node).await
    }

    async fn event_wakeups(&self) -> Result<Option<EventWakeups>> {
        self.listen().await.map(Some)
    }

    async fn renew_leases(&self, ids: &[String], lease_until_ms: i64) -> Result<()> {
        renew(&self.pool, ids, lease_until_ms).await
    }

    async fn finish_events(&self, settled: &[Settled]) -> Result<()> {
        // In id order, as commits consume events: two batches settling the same events
        // wait for each other instead of deadlocking.
        let mut ordered: Vec<&Settled> = settled.iter().collect();
        ordered.sort_by(|a, b| a.id.cmp(&b.id));
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        for s in ordered {
            finish(&mut tx, &s.id, s.attempt, &s.outcome, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_call(&self, call: &RanCall) -> Result<()> {
        record_call(self, call, now_ms()).await
    }

    async fn due_events(&self, function: &str, now_ms: i64) -> Result<DueEvents> {
        due(&self.pool, function, now_ms).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        list(&self.pool, filter).await
    }

    async fn event_counts(&self, function: Option<&str>) -> Result<EventCounts> {
        counts(&self.pool, function).await
    }

    async fn events_with_prefix(&self, prefix: &str) -> Result<Vec<EventRecord>> {
        with_prefix(&self.pool, prefix).await
    }

    async fn retry_events(&self, ids: Option<&[String]>) -> Result<usize> {
        retry(&self.pool, ids, now_ms()).await
    }

    async fn prune_events(&self, before_ms: i64, dry_run: bool) -> Result<EventsPruned> {
        prune(&self.pool, before_ms, dry_run).await
    }

    async fn save_function(&self, name: &str, record: &str) -> Result<()> {
        save_function(&self.pool, name, now_ms(), record).await
    }

    async fn cursor(&self, name: &str) -> Result<Option<i64>> {
        cursor(&self.pool, name).await
    }

    async fn set_cursor(&self, name: &str, value: i64) -> Result<()> {
        set_cursor(&self.pool, name, value).await
    }

    async fn functions(&self) -> Result<Vec<String>> {
        functions(&self.pool).await
    }

    async fn delete_function(&self, name: &str) -> Result<()> {
        delete_function(&self.pool, name).await
    }
}

impl PgStore {
    /// Wakes when another node (or this one) queues or retries events: each wake-up names
    /// the function they are for. Holds one connection of the pool. A wake-up is a hint:
    /// one sent while the connection was lost is gone, so a dispatcher still looks at
    /// [`Store::due_events`] now and then.
    pub async fn listen(&self) -> Result<EventWakeups> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
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
            claim_sql()
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
