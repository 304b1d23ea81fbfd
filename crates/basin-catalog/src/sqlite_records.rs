//! The SQLite side of what the catalog keeps besides commits: metering records, pipeline
//! runs and access tokens (see [`crate::Store`]).

use sqlx::SqlitePool;

use crate::model::TokenRecord;
use crate::rows::{Records, invocation_row, like_prefix, token_row};
use basin_core::InvocationRecord;
use basin_core::{Error, Result};

pub(crate) async fn record_invocation(pool: &SqlitePool, r: &InvocationRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO invocations (id, function, env_hash, started_at_ms, duration_ms, cpu_ms, \
         peak_memory_bytes, memory_limit_bytes, rows_in, bytes_in, rows_out, bytes_out, status, error, \
         kind, bytes_scanned) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&r.id)
    .bind(&r.function)
    .bind(&r.env_hash)
    .bind(r.started_at_ms)
    .bind(r.duration_ms)
    .bind(r.cpu_ms)
    .bind(r.peak_memory_bytes as i64)
    .bind(r.memory_limit_bytes as i64)
    .bind(r.rows_in as i64)
    .bind(r.bytes_in as i64)
    .bind(r.rows_out as i64)
    .bind(r.bytes_out as i64)
    .bind(r.status.as_str())
    .bind(r.error.as_deref())
    .bind(r.kind.as_str())
    .bind(r.bytes_scanned as i64)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn invocations(pool: &SqlitePool, since_ms: i64) -> Result<Vec<InvocationRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM invocations WHERE started_at_ms >= ? ORDER BY started_at_ms, id",
    )
    .bind(since_ms)
    .fetch_all(pool)
    .await?;
    rows.iter().map(invocation_row).collect()
}

/// Saves (or replaces) the record `id`.
pub(crate) async fn save_record(
    pool: &SqlitePool,
    records: Records,
    id: &str,
    started_at_ms: i64,
    record: &str,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {} (id, started_at_ms, record) VALUES (?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET record = excluded.record",
        records.table()
    );
    sqlx::query(&sql)
        .bind(id)
        .bind(started_at_ms)
        .bind(record)
        .execute(pool)
        .await?;
    Ok(())
}

/// The newest `limit` records, newest first.
pub(crate) async fn records(
    pool: &SqlitePool,
    records: Records,
    limit: usize,
) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT record FROM {} ORDER BY started_at_ms DESC, id DESC LIMIT ?",
        records.table()
    );
    Ok(sqlx::query_scalar(&sql)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?)
}

pub(crate) async fn delete_runs(pool: &SqlitePool, ids: &[String]) -> Result<u64> {
    let done = sqlx::query("DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))")
        .bind(serde_json::to_string(ids)?)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

pub(crate) async fn delete_maintenance_before(pool: &SqlitePool, before_ms: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM maintenance_runs WHERE started_at_ms < ?")
        .bind(before_ms)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

pub(crate) async fn runs_with_prefix(pool: &SqlitePool, prefix: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT record FROM runs WHERE id LIKE ? ORDER BY id DESC LIMIT 11")
            .bind(like_prefix(prefix))
            .fetch_all(pool)
            .await?,
    )
}

pub(crate) async fn create_token(pool: &SqlitePool, t: &TokenRecord) -> Result<()> {
    sqlx::query("INSERT INTO tokens (id, name, role, hash, created_at_ms) VALUES (?, ?, ?, ?, ?)")
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.role)
        .bind(&t.hash)
        .bind(t.created_at_ms)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn tokens(pool: &SqlitePool) -> Result<Vec<TokenRecord>> {
    let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at_ms, id")
        .fetch_all(pool)
        .await?;
    rows.iter().map(token_row).collect()
}

pub(crate) async fn token_by_hash(pool: &SqlitePool, hash: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query("SELECT * FROM tokens WHERE hash = ?")
        .bind(hash)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(token_row).transpose()
}

pub(crate) async fn delete_token(pool: &SqlitePool, id: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM tokens WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found(format!("no token `{id}`"))
            .with_hint("list them with `basin token ls`"));
    }
    Ok(())
}
