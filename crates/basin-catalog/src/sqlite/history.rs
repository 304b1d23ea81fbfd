//! The SQLite side of catalog history retention (see [`crate::history`]): one write
//! transaction reads the commit graph and the refs, plans, and removes, so a ref created or
//! moved meanwhile is either seen by the plan or made after the commits are gone.

use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::history::{HistoryCut, HistoryPruned, HistoryRetention, graph, plan};
use crate::model::{CommitId, Ref};
use basin_core::Result;

pub(crate) async fn prune(
    conn: &mut SqliteConnection,
    refs: &[Ref],
    retention: &HistoryRetention,
    dry_run: bool,
    now_ms: i64,
) -> Result<HistoryPruned> {
    let edges = sqlx::query_as("SELECT child, parent FROM commit_parents")
        .fetch_all(&mut *conn)
        .await?;
    let commits = sqlx::query_as("SELECT id, parent, created_at_ms, seq FROM commits")
        .fetch_all(&mut *conn)
        .await?;
    let plan = plan(&graph(edges, commits), refs, retention);
    let report = plan.report();
    if dry_run || plan.removed.is_empty() {
        return Ok(report);
    }
    let removed = serde_json::to_string(&plan.removed)?;
    for statement in [
        "DELETE FROM contents WHERE commit_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM commit_parents WHERE child IN (SELECT value FROM json_each(?))",
        "DELETE FROM history_cuts WHERE commit_id IN (SELECT value FROM json_each(?))",
        "DELETE FROM commits WHERE id IN (SELECT value FROM json_each(?))",
    ] {
        sqlx::query(statement)
            .bind(&removed)
            .execute(&mut *conn)
            .await?;
    }
    for (child, parent) in &plan.cut_edges {
        sqlx::query("DELETE FROM commit_parents WHERE child = ? AND parent = ?")
            .bind(child)
            .bind(parent)
            .execute(&mut *conn)
            .await?;
    }
    for (child, parent) in &plan.grafts {
        sqlx::query("INSERT OR IGNORE INTO commit_parents (child, parent) VALUES (?, ?)")
            .bind(child)
            .bind(parent)
            .execute(&mut *conn)
            .await?;
    }
    for commit in &plan.cuts {
        // A commit cut before keeps the date history was first cut there.
        sqlx::query(
            "INSERT OR IGNORE INTO history_cuts (commit_id, removed_at_ms, note) VALUES (?, ?, ?)",
        )
        .bind(commit)
        .bind(now_ms)
        .bind(&retention.note)
        .execute(&mut *conn)
        .await?;
    }
    Ok(report)
}

pub(crate) async fn cut(pool: &SqlitePool, at: &CommitId) -> Result<Option<HistoryCut>> {
    let row = sqlx::query("SELECT removed_at_ms, note FROM history_cuts WHERE commit_id = ?")
        .bind(at.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| HistoryCut {
        commit: at.clone(),
        removed_at_ms: r.get("removed_at_ms"),
        note: r.get("note"),
    }))
}
