//! Maintenance runs: what `basin serve` does on `[maintenance] schedule` (nightly at 03:00 UTC
//! by default) and `basin maintenance run` does now, each recorded for
//! `basin maintenance ls`.
//!
//! On every branch people write to (not the `run/*` and `replay/*` branches pipelines make
//! for themselves), in order:
//! 1. compaction of each table whose head has `[maintenance] compact_min_files` small files
//!    or more (16; [`crate::maintenance::compaction`]);
//! 2. expiry of each table's snapshots by the lakehouse's policy ([`crate::maintenance::expire`]);
//! 3. then one `basin gc` ([`crate::maintenance::gc`]), which also prunes history and Basin's leftovers.
//!
//! A step that fails (a compaction that lost a race, a table whose properties are wrong) is
//! recorded with the table and branch it names, and the others still run: the run's status
//! is then `failed`. A gc that fails is recorded the same way.

pub(crate) mod compaction;
pub(crate) mod expire;
pub mod gc;
mod handle;

use std::time::{Duration, Instant};

use basin_catalog::RefKind;
use basin_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use handle::Maintenance;

use crate::maintenance::expire::ExpireOptions;
use crate::maintenance::gc::{GcOptions, GcReport};
use crate::{CompactOptions, CompactReport, Lakehouse};

/// The trigger cursor that holds the last scheduled slot maintenance ran for.
const CURSOR: &str = "maintenance:schedule";

/// What one maintenance run did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MaintenanceRun {
    pub id: String,
    /// `schedule` (from `basin serve`) or `manual` (`basin maintenance run`).
    pub trigger: String,
    pub dry_run: bool,
    /// `running`, `succeeded` or `failed` (some step failed; see `errors`).
    pub status: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// The compactions that rewrote files (or would).
    pub compacted: Vec<CompactReport>,
    /// The tables whose snapshots were expired (or would be).
    pub expired: Vec<Expired>,
    pub gc: Option<GcReport>,
    /// Each failed step, naming its table and branch.
    pub errors: Vec<String>,
    pub seconds: f64,
}

/// One table's expiry in a maintenance run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Expired {
    pub table: String,
    pub branch: String,
    pub snapshots_expired: u64,
    pub commit: Option<String>,
}

impl MaintenanceRun {
    /// Small files rewritten by this run's compactions.
    pub fn files_compacted(&self) -> u64 {
        self.compacted.iter().map(|c| c.files_rewritten).sum()
    }

    pub fn snapshots_expired(&self) -> u64 {
        self.expired.iter().map(|e| e.snapshots_expired).sum()
    }
}

impl Maintenance<'_> {
    /// Runs maintenance now and records it; see the module docs. `trigger` says who asked.
    pub async fn run(&self, trigger: &str, dry_run: bool) -> Result<MaintenanceRun> {
        let clock = Instant::now();
        let mut run = MaintenanceRun {
            id: basin_core::ids::ordered(),
            trigger: trigger.to_string(),
            dry_run,
            status: "running".into(),
            started_at_ms: chrono::Utc::now().timestamp_millis(),
            ..MaintenanceRun::default()
        };
        self.save_maintenance(&run).await?;
        let min_files = self.lake.settings().maintenance.compact_min_files as u64;
        for branch in self.maintained_branches().await? {
            let tables = match self.lake.tables().list(Some(&branch)).await {
                Ok(tables) => tables,
                Err(e) => {
                    run.errors
                        .push(format!("listing the tables of `{branch}`: {e}"));
                    continue;
                }
            };
            for table in tables.iter().map(|t| t.table.as_str()) {
                if let Err(e) = self
                    .maintain_table(table, &branch, min_files, &mut run)
                    .await
                {
                    run.errors.push(format!("`{table}` on `{branch}`: {e}"));
                }
            }
        }
        match self
            .gc(&GcOptions {
                dry_run,
                grace: self.lake.settings().maintenance.gc_grace,
            })
            .await
        {
            Ok(report) => run.gc = Some(report),
            Err(e) => run.errors.push(format!("gc: {e}")),
        }
        // The records of maintenance runs are kept as long as those of pipeline runs.
        let keep = self.lake.settings().maintenance.keep_runs;
        if !dry_run && keep != Duration::MAX {
            let before = run.started_at_ms - keep.as_millis().min(i64::MAX as u128) as i64;
            self.lake
                .catalog()
                .store()
                .delete_maintenance_before(before)
                .await?;
        }
        run.status = if run.errors.is_empty() {
            "succeeded"
        } else {
            "failed"
        }
        .into();
        run.finished_at_ms = Some(chrono::Utc::now().timestamp_millis());
        run.seconds = clock.elapsed().as_secs_f64();
        self.save_maintenance(&run).await?;
        Ok(run)
    }

    /// Compacts `table` on `branch` if it has `min_files` small files, then expires it.
    async fn maintain_table(
        &self,
        table: &str,
        branch: &str,
        min_files: u64,
        run: &mut MaintenanceRun,
    ) -> Result<()> {
        let mut compact = CompactOptions {
            branch: Some(branch.to_string()),
            dry_run: true,
            ..CompactOptions::default()
        };
        let planned = self.compact_table(table, &compact).await?;
        if planned.files_rewritten >= min_files {
            compact.dry_run = run.dry_run;
            let report = if run.dry_run {
                planned
            } else {
                self.compact_table(table, &compact).await?
            };
            run.compacted.push(report);
        }
        let report = self
            .expire_table(
                table,
                &ExpireOptions {
                    branch: Some(branch.to_string()),
                    dry_run: run.dry_run,
                    ..ExpireOptions::default()
                },
            )
            .await?;
        if report.snapshots_expired > 0 {
            run.expired.push(Expired {
                table: report.table,
                branch: report.branch,
                snapshots_expired: report.snapshots_expired,
                commit: report.commit,
            });
        }
        Ok(())
    }

    /// The branches maintenance looks after: all but the ones pipelines make for themselves.
    async fn maintained_branches(&self) -> Result<Vec<String>> {
        Ok(self
            .lake
            .catalog()
            .list_refs()
            .await?
            .into_iter()
            .filter(|r| r.kind == RefKind::Branch && !crate::pipeline::is_pipeline_branch(&r.name))
            .map(|r| r.name)
            .collect())
    }

    async fn save_maintenance(&self, run: &MaintenanceRun) -> Result<()> {
        self.lake
            .catalog()
            .store()
            .save_maintenance(&run.id, run.started_at_ms, &serde_json::to_string(run)?)
            .await
    }

    /// The newest maintenance runs, newest first.
    pub async fn runs(&self, limit: usize) -> Result<Vec<MaintenanceRun>> {
        self.lake
            .catalog()
            .store()
            .maintenance_runs(limit)
            .await?
            .iter()
            .map(|record| {
                serde_json::from_str(record).map_err(|e| {
                    Error::internal(format!("a maintenance record cannot be read: {e}"))
                })
            })
            .collect()
    }
}

/// Runs maintenance at every slot of `[maintenance] schedule` until `stopped`, calling `done`
/// with each run. A slot that passed while no server ran is not caught up: the next one
/// comes soon enough, and `basin maintenance run` is there for now.
pub async fn run_schedule(
    lakehouse: Lakehouse,
    mut stopped: watch::Receiver<bool>,
    done: impl Fn(&MaintenanceRun) + Send + 'static,
) {
    let Some(cron) = lakehouse.settings().maintenance.schedule.clone() else {
        tracing::info!("scheduled maintenance is off ([maintenance] schedule = \"off\")");
        return;
    };
    let schedule = match crate::cron::Schedule::parse(&cron, "UTC", "skip") {
        Ok(schedule) => schedule,
        Err(e) => {
            tracing::error!("scheduled maintenance is off: {e}");
            return;
        }
    };
    let store = lakehouse.catalog().store().clone();
    let mut after = chrono::Utc::now().timestamp_millis();
    loop {
        let Some(slot) = schedule.next_after(after) else {
            return;
        };
        let wait = (slot - chrono::Utc::now().timestamp_millis()).max(0) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        after = slot;
        // Once per slot, even if the server restarted within it, and on one node of several:
        // the one that takes the slot's lease (held until the next slot).
        if store.cursor(CURSOR).await.ok().flatten() >= Some(slot) {
            continue;
        }
        let until = schedule.next_after(slot).unwrap_or(slot + 86_400_000);
        let node = crate::queue::node_name();
        match store.try_lease(CURSOR, node, slot, until).await {
            Ok(true) => {}
            Ok(false) => continue, // another node runs this slot
            Err(e) => {
                tracing::error!("scheduled maintenance skipped: {e}");
                continue;
            }
        }
        if let Err(e) = store.set_cursor(CURSOR, slot).await {
            tracing::error!("scheduled maintenance skipped: {e}");
            continue;
        }
        tracing::info!(%cron, "scheduled maintenance starting");
        match lakehouse.maintenance().run("schedule", false).await {
            Ok(run) => {
                tracing::info!(
                    status = %run.status,
                    files_compacted = run.files_compacted(),
                    snapshots_expired = run.snapshots_expired(),
                    files_removed = run.gc.as_ref().map_or(0, |g| g.files_removed),
                    seconds = run.seconds,
                    "scheduled maintenance done"
                );
                for error in &run.errors {
                    tracing::warn!("maintenance: {error}");
                }
                done(&run);
            }
            Err(e) => tracing::error!("scheduled maintenance failed: {e}"),
        }
    }
}
