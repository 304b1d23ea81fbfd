//! `basin gc`: deletes the warehouse files no commit can read.
//!
//! First, history: the catalog commits older than `[maintenance] keep_history` (30 days) that
//! no ref needs leave the log (the rule: [`basin_catalog::history`]; running pipeline runs'
//! base commits stay too). Mark: every table `metadata.json` any remaining commit of the
//! catalog points at (every branch, tag and retained commit of history, so nothing a ref or
//! `basin log` shows can lose a file), and everything each reaches (manifest lists, manifests, data and delete
//! files, statistics). Sweep: the warehouse's table files (`.parquet`, `.avro`,
//! `.metadata.json`, `.puffin`, `.orc`) that are not marked and are older than the grace
//! period. What is left: files of imports and runs that failed or were killed, and of
//! commits that lost a race. The grace period keeps the files of a write in flight (written,
//! not yet committed): it must be longer than the longest write.
//!
//! A mark that cannot read a file stops the gc before anything is deleted.
//!
//! Then Basin's own leftovers, each kept as long as `[maintenance]` says: run cache entries
//! unused for `keep_cache` (30 days), the `run/<id>` branches of failed and dry runs finished
//! `keep_run_branches` ago (7 days) and the `replay/<id>` branches whose last run did, the
//! events that succeeded `keep_events` ago (30 days; object events keep a slim row, which
//! dedupes their object), function environments unused for `keep_envs` (30 days), the records of runs finished `keep_runs` ago whose
//! branch is gone (90 days), and upload folders older than `keep_uploads` (1 day).

use crate::config::MIN_GRACE;
use std::time::{Duration, Instant, SystemTime};

use basin_catalog::{CommitId, HistoryRetention};
use basin_core::{Error, Result};
use basin_table::Reachable;
use serde::Serialize;

use super::Maintenance;

#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Only files older than this are deleted.
    pub grace: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            grace: Duration::from_secs(3600),
        }
    }
}

/// What a gc found, kept and removed.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub grace_seconds: u64,
    /// Table files in the warehouse.
    pub files_found: u64,
    pub bytes_found: u64,
    /// Read by some commit.
    pub files_reachable: u64,
    pub bytes_reachable: u64,
    /// Read by no commit, but younger than the grace period.
    pub files_too_young: u64,
    pub bytes_too_young: u64,
    /// Read by no commit and old enough: deleted (or, in a dry run, to delete).
    pub files_removed: u64,
    pub bytes_removed: u64,
    /// Table metadata files walked in the mark.
    pub metadata_files: u64,
    /// `[maintenance] keep_history` in seconds (`null`: history is kept forever).
    pub keep_history_seconds: Option<u64>,
    /// Catalog commits removed from history (or, in a dry run, to remove).
    pub history_commits_removed: u64,
    /// The commits where a chain of history was cut in this gc: the oldest each keeps.
    pub history_cut_at: Vec<String>,
    /// Up to 20 of the removed files, for a look.
    pub removed_sample: Vec<String>,
    /// Run cache entries unused for `[maintenance] keep_cache`, and their bytes.
    pub cache_entries_removed: u64,
    pub cache_bytes_removed: u64,
    /// Branches of failed and dry runs finished `[maintenance] keep_run_branches` ago.
    pub run_branches_removed: Vec<String>,
    /// Records of runs finished `[maintenance] keep_runs` ago whose branch is gone.
    pub runs_removed: u64,
    /// Upload folders older than `[maintenance] keep_uploads`.
    pub uploads_removed: u64,
    /// Events that succeeded `[maintenance] keep_events` ago: deleted (HTTP calls, schedule
    /// slots) ...
    pub events_removed: u64,
    /// ... or, for object events, their logs and result dropped (the row dedupes the object).
    pub events_slimmed: u64,
    /// Function environments unused for `[maintenance] keep_envs`.
    pub envs_removed: Vec<String>,
    /// Audit log entries older than `[maintenance] keep_audit`.
    #[serde(default)]
    pub audit_removed: u64,
    pub seconds: f64,
}

impl Maintenance<'_> {
    /// Marks what the catalog reaches and sweeps the rest of the warehouse; see the module.
    pub async fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        if options.grace < MIN_GRACE {
            return Err(Error::invalid(format!(
                "a grace period of {:?} could delete the files of a write in flight",
                options.grace
            ))
            .with_hint("use --grace 1m or more (the default is 1h)"));
        }
        let clock = Instant::now();
        // Files written after this are never candidates, whatever the mark finds.
        let cutoff = SystemTime::now() - options.grace;
        let warehouse = self.lake.warehouse();
        let mut report = GcReport {
            dry_run: options.dry_run,
            grace_seconds: options.grace.as_secs(),
            ..GcReport::default()
        };
        // Runs left `running` by a process that died keep their branch and history until
        // they are settled.
        if !options.dry_run {
            self.lake.pipelines().settle_abandoned_runs().await?;
        }
        // History first: the commits it removes mark nothing (in a dry run, they are left
        // out of the mark instead).
        let removed = self.prune_history(options.dry_run, &mut report).await?;
        // List first, then mark: a file committed between the two is younger than the cutoff
        // (or was marked), so it is never swept.
        let listed = warehouse.list_table_files().await?;
        let mut reachable =
            Reachable::new().with_max_metadata_size(self.lake.settings().sql.max_metadata_size);
        let locations = self
            .lake
            .catalog()
            .store()
            .all_metadata_locations(&removed)
            .await?;
        for location in &locations {
            reachable.add_metadata(warehouse, location).await?;
        }
        report.metadata_files = locations.len() as u64;
        let mut doomed = Vec::new();
        for file in listed {
            report.files_found += 1;
            report.bytes_found += file.bytes;
            if reachable.contains(&file.path) {
                report.files_reachable += 1;
                report.bytes_reachable += file.bytes;
            } else if file.modified > cutoff {
                report.files_too_young += 1;
                report.bytes_too_young += file.bytes;
            } else {
                report.files_removed += 1;
                report.bytes_removed += file.bytes;
                doomed.push(file.path);
            }
        }
        doomed.sort();
        report.removed_sample = doomed.iter().take(20).cloned().collect();
        if !options.dry_run {
            for batch in doomed.chunks(1000) {
                warehouse.delete_files(batch).await?;
            }
        }
        self.prune_leftovers(options.dry_run, &mut report).await?;
        report.seconds = clock.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Removes the catalog history `[maintenance] keep_history` lets go; returns the removed
    /// commits.
    async fn prune_history(&self, dry_run: bool, report: &mut GcReport) -> Result<Vec<CommitId>> {
        let keep = self.lake.settings().maintenance.keep_history;
        if keep == Duration::MAX {
            return Ok(Vec::new());
        }
        report.keep_history_seconds = Some(keep.as_secs());
        // A running pipeline run merges from the commit it read: its merge base.
        let running = self
            .lake
            .pipelines()
            .list_runs(i64::MAX as usize)
            .await?
            .into_iter()
            .filter(|run| run.status == "running")
            .map(|run| CommitId::from_string(run.read_commit))
            .collect();
        let retention = HistoryRetention {
            cutoff_ms: ms_ago(keep),
            keep: running,
            note: format!(
                "keep_history = {}",
                basin_core::units::format_duration(keep)
            ),
        };
        let pruned = self
            .lake
            .catalog()
            .store()
            .prune_history(&retention, dry_run)
            .await?;
        report.history_commits_removed = pruned.commits_removed;
        report.history_cut_at = pruned.cut_at.iter().map(|c| c.to_string()).collect();
        Ok(pruned.removed)
    }

    /// Basin's own leftovers, as `[maintenance]` says (see the module docs).
    async fn prune_leftovers(&self, dry_run: bool, report: &mut GcReport) -> Result<()> {
        let keep = self.lake.settings().maintenance.clone();
        let basin = self.lake.root().join(crate::BASIN_DIR);
        let cache = crate::pipeline::cache::RunCache::new(crate::pipeline::cache::folder(&basin));
        (report.cache_entries_removed, report.cache_bytes_removed) =
            cache.prune(keep.keep_cache, dry_run)?;

        let cutoff_ms = ms_ago(keep.keep_run_branches);
        let branches: std::collections::BTreeSet<String> = self
            .lake
            .catalog()
            .list_refs()
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        let runs = self.lake.pipelines().list_runs(i64::MAX as usize).await?;
        for run in &runs {
            let finished = run.finished_at_ms.is_some_and(|t| t < cutoff_ms);
            let kept_for_a_look = matches!(run.status.as_str(), "failed" | "dry-run");
            if finished && kept_for_a_look && branches.contains(&run.branch) {
                if !dry_run {
                    self.lake.catalog().delete_branch(&run.branch, None).await?;
                }
                report.run_branches_removed.push(run.branch.clone());
            }
        }
        // A replay's branch (`replay/<id>`, kept when outputs differed or asked) goes with the
        // last run made on it, as a run branch does.
        for name in branches.iter().filter(|b| b.starts_with("replay/")) {
            let last = runs
                .iter()
                .filter(|run| run.target == *name)
                .map(|run| run.finished_at_ms.unwrap_or(i64::MAX))
                .max();
            if last.is_none_or(|t| t < cutoff_ms) {
                if !dry_run {
                    self.lake.catalog().delete_branch(name, None).await?;
                }
                report.run_branches_removed.push(name.clone());
            }
        }
        // Run records (their code and logs), once their branch is gone: a failed run's record
        // stays as long as its branch, which `basin runs` and replays point at.
        let records_cutoff_ms = ms_ago(keep.keep_runs);
        let mut old_runs = Vec::new();
        for run in runs {
            let finished = run
                .finished_at_ms
                .is_some_and(|t| t < records_cutoff_ms && run.status != "running");
            let branch_gone = !branches.contains(&run.branch)
                || report.run_branches_removed.contains(&run.branch);
            if finished && branch_gone {
                old_runs.push(run.id);
            }
        }
        report.runs_removed = old_runs.len() as u64;
        if !dry_run && !old_runs.is_empty() {
            self.lake.catalog().store().delete_runs(&old_runs).await?;
        }

        if keep.keep_events != Duration::MAX {
            let pruned = self
                .lake
                .catalog()
                .store()
                .prune_events(ms_ago(keep.keep_events), dry_run)
                .await?;
            (report.events_removed, report.events_slimmed) = (pruned.removed, pruned.slimmed);
        }

        if keep.keep_audit != Duration::MAX && !dry_run {
            report.audit_removed = self
                .lake
                .catalog()
                .store()
                .prune_audit(ms_ago(keep.keep_audit))
                .await?;
        }

        if keep.keep_envs != Duration::MAX {
            let envs = self.lake.envs();
            report.envs_removed = if dry_run {
                envs.stale(keep.keep_envs)?
            } else {
                envs.prune(keep.keep_envs)?
            };
        }

        let uploads = basin.join("uploads");
        let cutoff = SystemTime::now() - keep.keep_uploads;
        if let Ok(entries) = std::fs::read_dir(&uploads) {
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m < cutoff);
                if old {
                    if !dry_run {
                        std::fs::remove_dir_all(entry.path()).map_err(|e| {
                            Error::io_with(format!("cannot remove {}", entry.path().display()), e)
                        })?;
                    }
                    report.uploads_removed += 1;
                }
            }
        }
        Ok(())
    }
}

/// The Unix time in milliseconds `keep` ago (far in the past for `Duration::MAX`, "forever").
fn ms_ago(keep: Duration) -> i64 {
    let now_ms = chrono::Utc::now().timestamp_millis();
    now_ms.saturating_sub(keep.as_millis().min(i64::MAX as u128) as i64)
}
