//! The Postgres side of commits: applying one (inside the caller's transaction), and
//! reading the commit graph and the trees.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Row};

use super::PgStore;
use crate::commit_rules::{Tree, branch_head, check_rebase, children_range, validate_operations};
use crate::history::{HistoryCut, HistoryPruned, HistoryRetention};
use crate::model::{Commit, CommitId, CommitRequest, Content, Key, Operation, Ref, RefKind};
use crate::rows::{self, to_json};
use crate::store::Commits;
use basin_core::time::now_ms;
use basin_core::{Error, ErrorKind, Result};

/// The columns of `commits` (as `c`) that [`rows::commit_row`] reads.
const COMMIT_COLUMNS: &str = "c.id, c.parent, c.merge_parent, c.author, c.message, \
     c.created_at_ms, c.operations::text AS operations, c.properties::text AS properties";

pub(crate) async fn read_ref(conn: &mut PgConnection, name: &str) -> Result<Option<Ref>> {
    let row = sqlx::query("SELECT name, kind, commit_id FROM refs WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(rows::ref_row).transpose()
}

#[async_trait]
impl Tree for PgConnection {
    async fn content(&mut self, at: &CommitId, key: &Key) -> Result<Option<Content>> {
        let value: Option<String> = sqlx::query_scalar(
            "SELECT value::text FROM contents WHERE commit_id = $1 AND key = $2",
        )
        .bind(at.as_str())
        .bind(key.as_str())
        .fetch_optional(&mut *self)
        .await?;
        value.as_deref().map(rows::content).transpose()
    }

    async fn children(&mut self, at: &CommitId, namespace: &Key) -> Result<Vec<String>> {
        let (after, before) = children_range(namespace);
        Ok(sqlx::query_scalar(
            "SELECT key FROM contents WHERE commit_id = $1 AND key > $2 AND key < $3",
        )
        .bind(at.as_str())
        .bind(after)
        .bind(before)
        .fetch_all(&mut *self)
        .await?)
    }
}

/// Applies `request` inside the caller's transaction (see the module docs of
/// `postgres.rs` for why the branch's row lock makes this safe with many nodes).
pub(crate) async fn commit(conn: &mut PgConnection, request: CommitRequest) -> Result<Commit> {
    let CommitRequest {
        branch,
        expected_head,
        operations,
        author,
        message,
        merge_parent,
        properties,
        events,
        ..
    } = request;
    // The branch's row lock: commits to one branch queue here.
    let found = sqlx::query("SELECT name, kind, commit_id FROM refs WHERE name = $1 FOR UPDATE")
        .bind(&branch)
        .fetch_optional(&mut *conn)
        .await?;
    let head = branch_head(&branch, found.as_ref().map(rows::ref_row).transpose()?)?;
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
        "INSERT INTO commits (id, parent, merge_parent, author, message, created_at_ms, \
         operations, properties) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb)",
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
    let parents: Vec<&str> = std::iter::once(&head)
        .chain(commit.merge_parent.as_ref())
        .map(CommitId::as_str)
        .collect();
    sqlx::query(
        "INSERT INTO commit_parents (child, parent) SELECT $1, p FROM unnest($2::text[]) p \
         ON CONFLICT DO NOTHING",
    )
    .bind(commit.id.as_str())
    .bind(&parents)
    .execute(&mut *conn)
    .await?;
    let touched: Vec<&str> = commit.operations.iter().map(|o| o.key().as_str()).collect();
    sqlx::query(
        "INSERT INTO contents (commit_id, key, value) SELECT $1, key, value FROM contents \
         WHERE commit_id = $2 AND key <> ALL($3::text[])",
    )
    .bind(commit.id.as_str())
    .bind(head.as_str())
    .bind(&touched)
    .execute(&mut *conn)
    .await?;
    let mut keys = Vec::new();
    let mut values = Vec::new();
    for op in &commit.operations {
        if let Operation::Put { key, content } = op {
            keys.push(key.as_str());
            values.push(to_json(content)?);
        }
    }
    sqlx::query(
        "INSERT INTO contents (commit_id, key, value) \
         SELECT $1, k, v::jsonb FROM unnest($2::text[], $3::text[]) AS t(k, v)",
    )
    .bind(commit.id.as_str())
    .bind(&keys)
    .bind(&values)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE refs SET commit_id = $1 WHERE name = $2")
        .bind(commit.id.as_str())
        .bind(&branch)
        .execute(&mut *conn)
        .await?;
    super::events::consume(conn, &events, commit.id.as_str(), commit.created_at_ms).await?;
    Ok(commit)
}

pub(crate) async fn get_commit(pool: &PgPool, id: &CommitId) -> Result<Option<Commit>> {
    let row = sqlx::query(&format!(
        "SELECT {COMMIT_COLUMNS} FROM commits c WHERE c.id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(rows::commit_row).transpose()
}

pub(crate) async fn commits_with_prefix(
    pool: &PgPool,
    prefix: &str,
    limit: usize,
) -> Result<Vec<CommitId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM commits WHERE id >= $1 AND id < $2 ORDER BY id LIMIT $3",
    )
    .bind(prefix)
    .bind(format!("{prefix}\u{7f}"))
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().map(CommitId::from_string).collect())
}

pub(crate) async fn log(pool: &PgPool, from: &CommitId, limit: usize) -> Result<Vec<Commit>> {
    let rows = sqlx::query(&format!(
        "WITH RECURSIVE chain(id, n) AS ( \
            SELECT $1::text COLLATE \"C\", 0::bigint \
            UNION ALL \
            SELECT c.parent, chain.n + 1 FROM commits c JOIN chain ON c.id = chain.id \
            WHERE c.parent IS NOT NULL AND chain.n + 1 < $2 \
         ) SELECT {COMMIT_COLUMNS} FROM chain JOIN commits c ON c.id = chain.id \
         ORDER BY chain.n"
    ))
    .bind(from.as_str())
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::commit_row).collect()
}

pub(crate) async fn is_ancestor(
    pool: &PgPool,
    ancestor: &CommitId,
    descendant: &CommitId,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "WITH RECURSIVE anc(id) AS ( \
            SELECT $1::text COLLATE \"C\" \
            UNION SELECT p.parent FROM commit_parents p JOIN anc ON p.child = anc.id \
         ) SELECT EXISTS (SELECT 1 FROM anc WHERE id = $2)",
    )
    .bind(descendant.as_str())
    .bind(ancestor.as_str())
    .fetch_one(pool)
    .await?)
}

pub(crate) async fn merge_base(
    pool: &PgPool,
    a: &CommitId,
    b: &CommitId,
) -> Result<Option<CommitId>> {
    // The common ancestor inserted last: no other common ancestor can descend from it.
    let found: Option<String> = sqlx::query_scalar(
        "WITH RECURSIVE \
            a(id) AS (SELECT $1::text COLLATE \"C\" \
                      UNION SELECT p.parent FROM commit_parents p JOIN a ON p.child = a.id), \
            b(id) AS (SELECT $2::text COLLATE \"C\" \
                      UNION SELECT p.parent FROM commit_parents p JOIN b ON p.child = b.id) \
         SELECT c.id FROM commits c \
         WHERE c.id IN (SELECT id FROM a) AND c.id IN (SELECT id FROM b) \
         ORDER BY c.seq DESC LIMIT 1",
    )
    .bind(a.as_str())
    .bind(b.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(found.map(CommitId::from_string))
}

pub(crate) async fn contents(pool: &PgPool, at: &CommitId) -> Result<BTreeMap<Key, Content>> {
    let rows = sqlx::query(
        "SELECT key, value::text AS value FROM contents WHERE commit_id = $1 ORDER BY key",
    )
    .bind(at.as_str())
    .fetch_all(pool)
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

pub(crate) async fn all_metadata_locations(
    pool: &PgPool,
    except: &[CommitId],
) -> Result<Vec<String>> {
    let except: Vec<&str> = except.iter().map(CommitId::as_str).collect();
    let values: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT value::text FROM contents WHERE commit_id <> ALL($1::text[])",
    )
    .bind(&except)
    .fetch_all(pool)
    .await?;
    let mut locations = Vec::new();
    for value in &values {
        if let Some(location) = rows::content(value)?.metadata_location() {
            locations.push(location.to_string());
        }
    }
    Ok(locations)
}

#[async_trait]
impl Commits for PgStore {
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
        let commit = commit(&mut tx, request).await?;
        tx.commit().await?;
        Ok(commit)
    }

    async fn get_commit(&self, id: &CommitId) -> Result<Option<Commit>> {
        get_commit(&self.pool, id).await
    }

    async fn commits_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<CommitId>> {
        commits_with_prefix(&self.pool, prefix, limit).await
    }

    async fn log(&self, from: &CommitId, limit: usize) -> Result<Vec<Commit>> {
        log(&self.pool, from, limit).await
    }

    async fn is_ancestor(&self, ancestor: &CommitId, descendant: &CommitId) -> Result<bool> {
        is_ancestor(&self.pool, ancestor, descendant).await
    }

    async fn merge_base(&self, a: &CommitId, b: &CommitId) -> Result<Option<CommitId>> {
        merge_base(&self.pool, a, b).await
    }

    async fn contents(&self, at: &CommitId) -> Result<BTreeMap<Key, Content>> {
        contents(&self.pool, at).await
    }

    async fn all_metadata_locations(&self, except: &[CommitId]) -> Result<Vec<String>> {
        all_metadata_locations(&self.pool, except).await
    }

    async fn prune_history(
        &self,
        retention: &HistoryRetention,
        dry_run: bool,
    ) -> Result<HistoryPruned> {
        let mut tx = self.pool.begin().await?;
        let pruned = super::history::prune(&mut tx, retention, dry_run, now_ms()).await?;
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
