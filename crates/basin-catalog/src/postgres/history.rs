//! The Postgres side of catalog history retention (see [`crate::history`]): one transaction
//! locks `refs` against writes, reads the refs and the commit graph, plans, and removes.
//! A commit or a new ref on another node waits for it, so a ref is either seen by the plan
//! or made after the commits are gone.

use sqlx::{PgConnection, PgPool, Row};

use crate::history::{HistoryCut, HistoryPruned, HistoryRetention, graph, plan};
use crate::model::CommitId;
use crate::rows;
use basin_core::Result;

pub(crate) async fn prune(
    conn: &mut PgConnection,
    retention: &HistoryRetention,
    dry_run: bool,
    now_ms: i64,
) -> Result<HistoryPruned> {
    // Conflicts with every write to `refs` and with another prune; commits may still lock
    // their branch's row, and wait for this only when they move it.
    sqlx::query("LOCK TABLE refs IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await?;
    let refs = sqlx::query("SELECT name, kind, commit_id FROM refs")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(rows::ref_row)
        .collect::<Result<Vec<_>>>()?;
    let edges = sqlx::query_as("SELECT child, parent FROM commit_parents")
        .fetch_all(&mut *conn)
        .await?;
    let commits = sqlx::query_as("SELECT id, parent, created_at_ms, seq FROM commits")
        .fetch_all(&mut *conn)
        .await?;
    let plan = plan(&graph(edges, commits), &refs, retention);
    let report = plan.report();
    if dry_run || plan.removed.is_empty() {
        return Ok(report);
    }
    for statement in [
        "DELETE FROM contents WHERE commit_id = ANY($1::text[])",
        "DELETE FROM commit_parents WHERE child = ANY($1::text[])",
        "DELETE FROM history_cuts WHERE commit_id = ANY($1::text[])",
        "DELETE FROM commits WHERE id = ANY($1::text[])",
    ] {
        sqlx::query(statement)
            .bind(&plan.removed)
            .execute(&mut *conn)
            .await?;
    }
    let (children, parents): (Vec<&str>, Vec<&str>) = plan
        .cut_edges
        .iter()
        .map(|(c, p)| (c.as_str(), p.as_str()))
        .unzip();
    sqlx::query(
        "DELETE FROM commit_parents p USING unnest($1::text[], $2::text[]) AS e(child, parent) \
         WHERE p.child = e.child AND p.parent = e.parent",
    )
    .bind(&children)
    .bind(&parents)
    .execute(&mut *conn)
    .await?;
    let (children, parents): (Vec<&str>, Vec<&str>) = plan
        .grafts
        .iter()
        .map(|(c, p)| (c.as_str(), p.as_str()))
        .unzip();
    sqlx::query(
        "INSERT INTO commit_parents (child, parent) SELECT * FROM unnest($1::text[], $2::text[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&children)
    .bind(&parents)
    .execute(&mut *conn)
    .await?;
    // A commit cut before keeps the date history was first cut there.
    sqlx::query(
        "INSERT INTO history_cuts (commit_id, removed_at_ms, note) \
         SELECT c, $2, $3 FROM unnest($1::text[]) AS c ON CONFLICT DO NOTHING",
    )
    .bind(&plan.cuts)
    .bind(now_ms)
    .bind(&retention.note)
    .execute(&mut *conn)
    .await?;
    Ok(report)
}

pub(crate) async fn cut(pool: &PgPool, at: &CommitId) -> Result<Option<HistoryCut>> {
    let row = sqlx::query("SELECT removed_at_ms, note FROM history_cuts WHERE commit_id = $1")
        .bind(at.as_str())
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        Ok(HistoryCut {
            commit: at.clone(),
            removed_at_ms: r.try_get("removed_at_ms")?,
            note: r.try_get("note")?,
        })
    })
    .transpose()
}
