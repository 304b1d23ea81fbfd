//! The SQL both backends run as written: `$N` placeholders, which SQLite reads too, over
//! tables both define alike. Each backend expands [`same_sql!`] for its store type (whose
//! `pool` field is its connection pool) and its `sqlx` database. What the dialects say
//! differently (deleting a list of runs, matching an id prefix, an audit entry's write that
//! does not wait for the disk) each backend writes in its `records.rs` as the free functions
//! `delete_runs`, `runs_with_prefix` and `record_audit`, which the expansion calls.
//!
//! A macro, not a function generic over `sqlx::Database`: the trait bounds that would take
//! (an executor, argument encoders and row decoders for every bound type) say less than the
//! statements do.

macro_rules! same_sql {
    ($store:ty, $database:ty) => {
        impl $store {
            /// Stores a finished invocation's metering, on a pool or in a transaction.
            pub(crate) async fn insert_invocation<'c, E>(
                executor: E,
                r: &basin_core::InvocationRecord,
            ) -> basin_core::Result<()>
            where
                E: sqlx::Executor<'c, Database = $database>,
            {
                sqlx::query(
                    "INSERT INTO invocations (id, function, env_hash, started_at_ms, duration_ms, \
                     cpu_ms, peak_memory_bytes, memory_limit_bytes, rows_in, bytes_in, rows_out, \
                     bytes_out, status, error, kind, bytes_scanned) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
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
                .execute(executor)
                .await?;
                Ok(())
            }

            /// Saves (or replaces) record `id` of `table`.
            async fn save_record(
                &self,
                table: $crate::rows::RecordTable,
                id: &str,
                started_at_ms: i64,
                record: &str,
            ) -> basin_core::Result<()> {
                sqlx::query(&table.upsert_sql())
                    .bind(id)
                    .bind(started_at_ms)
                    .bind(record)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// Stores an audit entry, on a pool or in a transaction.
            pub(crate) async fn insert_audit<'c, E>(
                executor: E,
                e: &$crate::AuditEntry,
            ) -> basin_core::Result<()>
            where
                E: sqlx::Executor<'c, Database = $database>,
            {
                sqlx::query(
                    "INSERT INTO audit (at_ms, principal, door, action, target, outcome, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(e.at_ms)
                .bind(&e.principal)
                .bind(&e.door)
                .bind(&e.action)
                .bind(&e.target)
                .bind(&e.outcome)
                .bind(&e.detail)
                .execute(executor)
                .await?;
                Ok(())
            }

            /// The newest `limit` records of `table`, newest first.
            async fn newest_records(
                &self,
                table: $crate::rows::RecordTable,
                limit: usize,
            ) -> basin_core::Result<Vec<String>> {
                Ok(sqlx::query_scalar(&table.newest_sql())
                    .bind(limit as i64)
                    .fetch_all(&self.pool)
                    .await?)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Records for $store {
            async fn record_invocation(
                &self,
                r: &basin_core::InvocationRecord,
            ) -> basin_core::Result<()> {
                Self::insert_invocation(&self.pool, r).await
            }

            async fn invocations(
                &self,
                since_ms: i64,
            ) -> basin_core::Result<Vec<basin_core::InvocationRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM invocations WHERE started_at_ms >= $1 \
                     ORDER BY started_at_ms, id",
                )
                .bind(since_ms)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::rows::invocation_row).collect()
            }

            async fn save_run(
                &self,
                id: &str,
                started_at_ms: i64,
                record: &str,
            ) -> basin_core::Result<()> {
                self.save_record($crate::rows::RecordTable::Runs, id, started_at_ms, record)
                    .await
            }

            async fn runs(&self, limit: usize) -> basin_core::Result<Vec<String>> {
                self.newest_records($crate::rows::RecordTable::Runs, limit).await
            }

            async fn runs_with_prefix(&self, prefix: &str) -> basin_core::Result<Vec<String>> {
                runs_with_prefix(&self.pool, prefix).await
            }

            async fn delete_runs(&self, ids: &[String]) -> basin_core::Result<u64> {
                delete_runs(&self.pool, ids).await
            }

            async fn save_maintenance(
                &self,
                id: &str,
                started_at_ms: i64,
                record: &str,
            ) -> basin_core::Result<()> {
                self.save_record($crate::rows::RecordTable::Maintenance, id, started_at_ms, record)
                    .await
            }

            async fn maintenance_runs(&self, limit: usize) -> basin_core::Result<Vec<String>> {
                self.newest_records($crate::rows::RecordTable::Maintenance, limit).await
            }

            async fn delete_maintenance_before(&self, before_ms: i64) -> basin_core::Result<u64> {
                let done = sqlx::query("DELETE FROM maintenance_runs WHERE started_at_ms < $1")
                    .bind(before_ms)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Tokens for $store {
            async fn create_token(&self, t: &$crate::TokenRecord) -> basin_core::Result<()> {
                sqlx::query(
                    "INSERT INTO tokens (id, name, role, hash, created_at_ms, grants) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&t.id)
                .bind(&t.name)
                .bind(&t.role)
                .bind(&t.hash)
                .bind(t.created_at_ms)
                .bind(if t.grants.is_empty() {
                    None
                } else {
                    Some(serde_json::to_string(&t.grants)?)
                })
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn tokens(&self) -> basin_core::Result<Vec<$crate::TokenRecord>> {
                let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at_ms, id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map($crate::rows::token_row).collect()
            }

            async fn token_by_hash(
                &self,
                hash: &str,
            ) -> basin_core::Result<Option<$crate::TokenRecord>> {
                let row = sqlx::query("SELECT * FROM tokens WHERE hash = $1")
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map($crate::rows::token_row).transpose()
            }

            async fn delete_token(&self, id: &str) -> basin_core::Result<()> {
                let done = sqlx::query("DELETE FROM tokens WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(basin_core::Error::not_found(format!("no token `{id}`"))
                        .with_hint("list them with `basin token ls`"));
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Settings for $store {
            async fn try_lease(
                &self,
                name: &str,
                holder: &str,
                now_ms: i64,
                until_ms: i64,
            ) -> basin_core::Result<bool> {
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

            async fn release_lease(&self, name: &str, holder: &str) -> basin_core::Result<()> {
                sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn setting(&self, name: &str) -> basin_core::Result<Option<String>> {
                Ok(
                    sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn put_setting(&self, name: &str, value: &str) -> basin_core::Result<()> {
                sqlx::query(
                    "INSERT INTO settings (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                )
                .bind(name)
                .bind(value)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn fix_setting(&self, name: &str, value: &str) -> basin_core::Result<String> {
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
        }

        #[async_trait::async_trait]
        impl $crate::store::Reviews for $store {
            async fn open_review(&self, r: &$crate::NewReview) -> basin_core::Result<i64> {
                Ok(sqlx::query_scalar(
                    "INSERT INTO reviews (source, target, author, title, state, created_at_ms) \
                     VALUES ($1, $2, $3, $4, 'open', $5) RETURNING id",
                )
                .bind(&r.source)
                .bind(&r.target)
                .bind(&r.author)
                .bind(&r.title)
                .bind(r.created_at_ms)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn review(&self, id: i64) -> basin_core::Result<Option<$crate::ReviewRecord>> {
                let row = sqlx::query("SELECT * FROM reviews WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(mut review) = row.as_ref().map($crate::rows::review_row).transpose()? else {
                    return Ok(None);
                };
                let rows = sqlx::query(
                    "SELECT * FROM review_approvals WHERE review_id = $1 \
                     ORDER BY approved_at_ms, principal",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                for row in &rows {
                    review.approvals.push($crate::rows::approval_row(row)?.1);
                }
                Ok(Some(review))
            }

            async fn reviews(
                &self,
                state: Option<$crate::ReviewState>,
            ) -> basin_core::Result<Vec<$crate::ReviewRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM reviews WHERE $1 IS NULL OR state = $1 ORDER BY id DESC",
                )
                .bind(state.map(|s| s.as_str()))
                .fetch_all(&self.pool)
                .await?;
                let mut reviews = rows
                    .iter()
                    .map($crate::rows::review_row)
                    .collect::<basin_core::Result<Vec<_>>>()?;
                let rows = sqlx::query(
                    "SELECT a.* FROM review_approvals a JOIN reviews r ON r.id = a.review_id \
                     WHERE $1 IS NULL OR r.state = $1 ORDER BY a.approved_at_ms, a.principal",
                )
                .bind(state.map(|s| s.as_str()))
                .fetch_all(&self.pool)
                .await?;
                for row in &rows {
                    let (id, approval) = $crate::rows::approval_row(row)?;
                    if let Some(review) = reviews.iter_mut().find(|r| r.id == id) {
                        review.approvals.push(approval);
                    }
                }
                Ok(reviews)
            }

            async fn approve_review(
                &self,
                id: i64,
                principal: &str,
                source_head: &str,
                at_ms: i64,
            ) -> basin_core::Result<()> {
                sqlx::query(
                    "INSERT INTO review_approvals (review_id, principal, source_head, approved_at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (review_id, principal) DO UPDATE \
                     SET source_head = excluded.source_head, approved_at_ms = excluded.approved_at_ms",
                )
                .bind(id)
                .bind(principal)
                .bind(source_head)
                .bind(at_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn end_review(
                &self,
                id: i64,
                state: $crate::ReviewState,
                by: &str,
                merged_commit: Option<&str>,
                at_ms: i64,
            ) -> basin_core::Result<bool> {
                let done = sqlx::query(
                    "UPDATE reviews SET state = $1, closed_by = $2, merged_commit = $3, \
                     closed_at_ms = $4 WHERE id = $5 AND state = 'open'",
                )
                .bind(state.as_str())
                .bind(by)
                .bind(merged_commit)
                .bind(at_ms)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Audit for $store {
            async fn record_audit(&self, e: &$crate::AuditEntry) -> basin_core::Result<()> {
                record_audit(self, e).await
            }

            async fn audit(
                &self,
                f: &$crate::AuditFilter,
            ) -> basin_core::Result<Vec<$crate::AuditEntry>> {
                let rows = sqlx::query(
                    "SELECT * FROM audit WHERE ($1 IS NULL OR principal = $1) \
                     AND ($2 IS NULL OR at_ms >= $2) ORDER BY id DESC LIMIT $3",
                )
                .bind(f.principal.as_deref())
                .bind(f.since_ms)
                .bind(f.limit as i64)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::rows::audit_row).collect()
            }

            async fn prune_audit(&self, before_ms: i64) -> basin_core::Result<u64> {
                let done = sqlx::query("DELETE FROM audit WHERE at_ms < $1")
                    .bind(before_ms)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use same_sql;
