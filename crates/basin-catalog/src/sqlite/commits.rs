//! Refs and commits in SQLite.
//!
//! Each commit stores the full key -> content map of its tree (copied inside the database with
//! one `INSERT .. SELECT`), so reading any ref is one indexed lookup and creating a branch is
//! one row, whatever the number of tables. The price is rows per commit proportional to the
//! number of keys; compaction of old trees belongs to snapshot expiry.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::{Row, SqliteConnection};

use super::SqlStore;
use crate::commit_rules::{Tree, branch_head, check_rebase, children_range, validate_operations};
use crate::history::{HistoryCut, HistoryPruned, HistoryRetention};
use crate::model::{Commit, CommitId, CommitRequest, Content, Key, Operation, Ref, RefKind};
use crate::rows::{self, to_json};
use crate::store::Commits;
use basin_core::time::now_ms;
use basin_core::{Error, ErrorKind, Result};

pub(super) async fn read_ref(conn: &mut SqliteConnection, name: &str) -> Result<Option<Ref>> {
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
impl Commits for SqlStore {
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
                let CommitRequest { branch, expected_head, operations, author, message, merge_parent, properties, events, .. } =
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
                super::events::consume(conn, &events, commit.id.as_str(), commit.created_at_ms).await?;
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
        let pruned = super::history::prune(&mut tx, &refs, retention, dry_run, now_ms()).await?;
        tx.commit().await?;
        Ok(pruned)
    }

    async fn history_cut(&self, at: &CommitId) -> Result<Option<HistoryCut>> {
        super::history::cut(&self.pool, at).await
    }

    async fn content(&self, at: &CommitId, key: &Key) -> Result<Option<Content>> {
        let mut conn = self.pool.acquire().await?;
        conn.content(at, key).await
    }
}
