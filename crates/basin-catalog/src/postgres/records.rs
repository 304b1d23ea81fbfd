//! What Postgres keeps besides commits and the queue (metering records, pipeline and
//! maintenance runs, tokens, settings and leases): the statements both backends share
//! ([`crate::same_sql`]), and the three this dialect says its own way.

use sqlx::PgPool;

use super::PgStore;
use crate::rows::like_prefix;
use crate::same_sql::same_sql;
use basin_core::Result;

async fn delete_runs(pool: &PgPool, ids: &[String]) -> Result<u64> {
    let done = sqlx::query("DELETE FROM runs WHERE id = ANY($1::text[])")
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// `ILIKE` without an escape character matches as SQLite's `LIKE` does.
async fn runs_with_prefix(pool: &PgPool, prefix: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT record FROM runs WHERE id ILIKE $1 ESCAPE '' ORDER BY id DESC LIMIT 11",
    )
    .bind(like_prefix(prefix))
    .fetch_all(pool)
    .await?)
}

/// In a transaction that does not wait for the disk (see `Audit::record_audit`).
async fn record_audit(store: &PgStore, entry: &crate::AuditEntry) -> Result<()> {
    let mut tx = store.begin_relaxed().await?;
    PgStore::insert_audit(&mut *tx, entry).await?;
    tx.commit().await?;
    Ok(())
}

same_sql!(PgStore, sqlx::Postgres);
