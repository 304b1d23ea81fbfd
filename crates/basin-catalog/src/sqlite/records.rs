//! What SQLite keeps besides commits and the queue (metering records, pipeline and
//! maintenance runs, tokens, settings and leases): the statements both backends share
//! ([`crate::same_sql`]), and the three this dialect says its own way.

use sqlx::SqlitePool;

use super::SqlStore;
use crate::rows::like_prefix;
use crate::same_sql::same_sql;
use basin_core::Result;

async fn delete_runs(pool: &SqlitePool, ids: &[String]) -> Result<u64> {
    let done = sqlx::query("DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))")
        .bind(serde_json::to_string(ids)?)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

async fn runs_with_prefix(pool: &SqlitePool, prefix: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT record FROM runs WHERE id LIKE ? ORDER BY id DESC LIMIT 11")
            .bind(like_prefix(prefix))
            .fetch_all(pool)
            .await?,
    )
}

/// On the connection that does not wait for the disk (see `Audit::record_audit`).
async fn record_audit(store: &SqlStore, entry: &crate::AuditEntry) -> Result<()> {
    SqlStore::insert_audit(&store.relaxed, entry).await
}

same_sql!(SqlStore, sqlx::Sqlite);
