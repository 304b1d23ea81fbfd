//! Runs whose process stopped without finishing (killed, out of memory, its machine lost).
//!
//! The process running a run holds the run's lease (`run:ID` in the catalog's leases),
//! renewed every third of `[functions] event_lease`, from before its record says `running`
//! until the record says how it ended. A record that still says `running` once that lease
//! has run out belongs to no process: it is settled by what the catalog shows. If the
//! target holds the run's merge commit (`merge run/ID into TARGET`), the process died between
//! the merge and its last save: the run succeeded. Otherwise it failed, its target untouched,
//! and its branch goes the way of a failed run's (`[maintenance] keep_run_branches`).
//! Without this, such a record said `running` forever, and gc kept its branch and the
//! history since the commit it read.

use basin_core::time::now_ms;
use basin_core::{Error, Result};

use super::Pipelines;
use super::RunRecord;
use crate::queue::Background;

/// The lease of run `id`.
fn lease(id: &str) -> String {
    format!("run:{id}")
}

/// Commits of the target looked through for a run's merge.
const MERGE_SEARCH: usize = 10_000;

impl Pipelines<'_> {
    /// Takes run `id`'s lease for this process and renews it until the returned guard drops.
    pub(super) async fn hold_run(&self, id: &str) -> Result<Background> {
        let store = self.lake.catalog().store().clone();
        let holder = crate::queue::node_name();
        let every = self.lake.settings().event_lease;
        let name = lease(id);
        let now = now_ms();
        if !store
            .try_lease(&name, holder, now, now + every.as_millis() as i64)
            .await?
        {
            return Err(Error::internal(format!("run {id}'s lease is taken")));
        }
        Ok(Background(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every / 3).await;
                let now = now_ms();
                let until = now + every.as_millis() as i64;
                match store.try_lease(&name, holder, now, until).await {
                    Ok(true) => {}
                    // Ran out while renewals failed, and a settler took it: the run goes on,
                    // and its last save overwrites the settled record.
                    Ok(false) => tracing::warn!(
                        "lost the lease of {name}: its run may be settled as abandoned"
                    ),
                    Err(e) => tracing::warn!("cannot renew the lease of {name}: {e}"),
                }
            }
        })))
    }

    /// Stops renewing run `id`'s lease (`held`) and ends it: its record says how it ended.
    pub(super) async fn release_run(&self, id: &str, held: Background) {
        drop(held);
        let holder = crate::queue::node_name();
        if let Err(e) = self
            .lake
            .catalog()
            .store()
            .release_lease(&lease(id), holder)
            .await
        {
            tracing::warn!("cannot release the lease of run {id} (it runs out by itself): {e}");
        }
    }

    /// Settles the runs recorded as `running` whose process is gone (see the module docs);
    /// returns them as they are recorded now.
    pub async fn settle_abandoned_runs(&self) -> Result<Vec<RunRecord>> {
        let store = self.lake.catalog().store().clone();
        let holder = format!("settle:{}", crate::queue::node_name());
        let every = self.lake.settings().event_lease.as_millis() as i64;
        let mut settled = Vec::new();
        for listed in self.list_runs(i64::MAX as usize).await? {
            if listed.status != "running" {
                continue;
            }
            // Free only once the running process stopped renewing it; taken here, it also
            // keeps a second settler off this run.
            let now = now_ms();
            if !store
                .try_lease(&lease(&listed.id), &holder, now, now + every)
                .await?
            {
                continue;
            }
            // Read again under the lease: the run may have ended since the list was read.
            let mut run = self.show_run(&listed.id).await?;
            if run.status != "running" {
                continue;
            }
            run.finished_at_ms = Some(now);
            match self.find_merge(&run).await? {
                Some(commit) => {
                    run.status = "succeeded".into();
                    run.merged_commit = Some(commit);
                }
                None => {
                    run.status = "failed".into();
                    run.error = Some(format!(
                        "abandoned: the process running it stopped before it finished (killed, \
                         or its machine lost); nothing was merged into `{}`",
                        run.target
                    ));
                }
            }
            run.branch_deleted = self
                .lake
                .catalog()
                .store()
                .get_ref(&run.branch)
                .await?
                .is_none();
            tracing::warn!(run = %run.id, status = %run.status, "settled a run its process left running");
            self.save_run(&run).await?;
            store.release_lease(&lease(&run.id), &holder).await?;
            settled.push(run);
        }
        Ok(settled)
    }

    /// The commit merging `run`'s branch into its target, if the target has one.
    async fn find_merge(&self, run: &RunRecord) -> Result<Option<String>> {
        let Ok(target) = self.lake.catalog().resolve(&run.target).await else {
            return Ok(None);
        };
        let message = format!("merge {} into {}", run.branch, run.target);
        let log = self.lake.catalog().log(&target, MERGE_SEARCH).await?;
        Ok(log
            .iter()
            .take_while(|c| c.created_at_ms >= run.started_at_ms)
            .find(|c| c.merge_parent.is_some() && c.message == message)
            .map(|c| c.id.to_string()))
    }
}
