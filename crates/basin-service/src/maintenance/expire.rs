//! `basin table expire`: drops a table's old snapshots from one branch's metadata, in one
//! catalog commit (`expire NS.T: N snapshots`). No new snapshot: the branch reads the same
//! rows, its time travel reaches less far back.
//!
//! The policy is `[maintenance] keep_snapshots` and `keep_last`, overridden by the table's
//! `history.expire.max-snapshot-age-ms` and `history.expire.min-snapshots-to-keep`
//! properties, overridden by the command's flags. The current snapshot is never expired, nor
//! a snapshot one of the lakehouse's tags reads (the current snapshot of the metadata the
//! tag's commit names for this table).
//!
//! Expiry deletes no file: the branch's earlier commits still name the earlier metadata
//! files, which list every snapshot. The files only expired snapshots read go once catalog
//! history retention (`keep_history`, applied by `basin gc`) has dropped those commits.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use basin_catalog::{Clearance, CommitRequest, Content, Key, RefKind};
use basin_core::Result;
use basin_table::iceberg::table::Table;
use basin_table::{ExpirePolicy, TableChange, Tables, snapshots_to_expire};
use serde::Serialize;

use super::Maintenance;

/// What `basin table expire` was asked; `None` takes the table's policy.
#[derive(Clone, Debug, Default)]
pub struct ExpireOptions {
    pub branch: Option<String>,
    pub older_than: Option<Duration>,
    pub retain_last: Option<usize>,
    pub dry_run: bool,
}

/// What an expiry did (or, in a dry run, would do).
#[derive(Clone, Debug, Serialize)]
pub struct ExpireReport {
    pub table: String,
    pub branch: String,
    pub dry_run: bool,
    /// The policy applied: snapshots older than this (`null`: none) ...
    pub older_than_ms: Option<u64>,
    /// ... except the newest this many of the current ancestry.
    pub retain_last: usize,
    pub snapshots_before: u64,
    pub snapshots_expired: u64,
    /// The expired snapshots, oldest first.
    pub expired: Vec<ExpiredSnapshot>,
    /// Old enough to go, but a tag reads them.
    pub kept_for_tags: u64,
    /// The new commit, unless nothing was done.
    pub commit: Option<String>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExpiredSnapshot {
    /// A string, as every snapshot id in Basin's JSON (they pass 2^53).
    pub snapshot_id: String,
    pub timestamp_ms: i64,
}

impl Maintenance<'_> {
    /// The lakehouse's snapshot policy, from `[maintenance]`.
    pub fn expire_policy(&self) -> ExpirePolicy {
        let keep = &self.lake.settings().maintenance;
        ExpirePolicy {
            max_age: (keep.keep_snapshots != Duration::MAX).then_some(keep.keep_snapshots),
            retain_last: keep.keep_last,
        }
    }

    /// Expires `name`'s old snapshots on `options.branch` (default: the current branch); see
    /// the module docs.
    pub async fn expire_table(&self, name: &str, options: &ExpireOptions) -> Result<ExpireReport> {
        let clock = Instant::now();
        let key = Key::table(name)?;
        if options.retain_last == Some(0) {
            return Err(basin_core::Error::invalid(
                "--retain-last 0 would expire the current snapshot",
            )
            .with_hint("--retain-last 1 keeps only the current snapshot (the least there is)"));
        }
        let at = self.lake.resolve(options.branch.as_deref()).await?;
        let branch = at.writable_branch()?.to_string();
        let table = self.lake.iceberg_tables().load(&at, &key).await?;
        let metadata = table.metadata();
        let mut policy = ExpirePolicy::for_table(self.expire_policy(), metadata)
            .map_err(|e| e.with_hint(format!("fix it with `basin table show {key}` and an engine's ALTER TABLE, or pass --older-than and --retain-last")))?;
        if let Some(age) = options.older_than {
            policy.max_age = Some(age);
        }
        if let Some(n) = options.retain_last {
            policy.retain_last = n;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let tagged = self.tagged_snapshots(&key, &table).await?;
        let expired = snapshots_to_expire(metadata, &policy, &tagged, now_ms);
        let unprotected = snapshots_to_expire(metadata, &policy, &HashSet::new(), now_ms);
        let mut report = ExpireReport {
            table: key.to_string(),
            branch: branch.clone(),
            dry_run: options.dry_run,
            older_than_ms: policy
                .max_age
                .map(|d| d.as_millis().min(u64::MAX as u128) as u64),
            retain_last: policy.retain_last.max(1),
            snapshots_before: metadata.snapshots().len() as u64,
            snapshots_expired: expired.len() as u64,
            expired: expired
                .iter()
                .filter_map(|id| metadata.snapshot_by_id(*id))
                .map(|s| ExpiredSnapshot {
                    snapshot_id: s.snapshot_id().to_string(),
                    timestamp_ms: s.timestamp_ms(),
                })
                .collect(),
            kept_for_tags: (unprotected.len() - expired.len()) as u64,
            commit: None,
            seconds: 0.0,
        };
        if options.dry_run || expired.is_empty() {
            report.seconds = clock.elapsed().as_secs_f64();
            return Ok(report);
        }
        let request = CommitRequest::new(
            &branch,
            at.commit.clone(),
            format!("expire {key}: {} snapshots", expired.len()),
        )
        .cleared(Clearance::Maintenance);
        let outcome = self
            .lake
            .iceberg_tables()
            .commit_change(
                &key,
                Tables::stage_existing(table),
                TableChange::Expire(expired.into_iter().collect()),
                request,
            )
            .await
            .map_err(|e| {
                e.with_hint(format!(
                    "nothing was expired; run `basin table expire {key}` again"
                ))
            })?;
        report.commit = Some(outcome.commit.id.to_string());
        report.seconds = clock.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The snapshots of `table` that one of the lakehouse's tags reads: for each tag, the
    /// current snapshot of the metadata its commit names for `key`.
    async fn tagged_snapshots(&self, key: &Key, table: &Table) -> Result<HashSet<i64>> {
        let own = table.metadata_location().unwrap_or_default().to_string();
        let mut read: HashMap<String, Option<i64>> = HashMap::new();
        read.insert(own, table.metadata().current_snapshot_id());
        let mut tagged = HashSet::new();
        for tag in self.lake.catalog().list_refs().await? {
            if tag.kind != RefKind::Tag {
                continue;
            }
            let Some(Content::Table { metadata_location }) =
                self.lake.catalog().store().content(&tag.head, key).await?
            else {
                continue;
            };
            let current = match read.get(&metadata_location) {
                Some(current) => *current,
                None => {
                    let tagged_table = self
                        .lake
                        .iceberg_tables()
                        .load_from(key, &metadata_location)
                        .await?;
                    let current = tagged_table.metadata().current_snapshot_id();
                    read.insert(metadata_location, current);
                    current
                }
            };
            tagged.extend(current);
        }
        Ok(tagged)
    }
}
