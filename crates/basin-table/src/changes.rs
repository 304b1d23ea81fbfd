//! Changes to several tables as one catalog commit: all of them land, or none (a load from a
//! database source writes every table it read from one point in time together).

use std::collections::{BTreeSet, HashSet};

use basin_catalog::{Commit, CommitRequest, Content, Key, Operation, Resolved};
use basin_core::ErrorKind;

use crate::error::{Result, from_iceberg};
use crate::retry::Backoff;
use crate::tables::{Staged, TableChange, Tables, out_of_attempts};

/// One table's part of a [`Tables::commit_changes`]: the staged table the data files were
/// written against, and what to do with them.
pub struct StagedChange {
    pub key: Key,
    pub staged: Staged,
    pub change: TableChange,
}

impl Tables {
    /// Commits every change on `request.branch` in one catalog commit, creating the
    /// namespaces they need. Like [`Tables::commit_change`], a race with another writer
    /// re-stages each change on the new head (data files are kept) and retries; a true
    /// conflict on any table fails the whole commit, and nothing is written. The request's
    /// properties are also written in each table's new snapshot summary.
    pub async fn commit_changes(
        &self,
        changes: Vec<StagedChange>,
        mut request: CommitRequest,
    ) -> Result<Commit> {
        let branch = request.branch.clone();
        let mut head = request.expected_head.clone();
        // The commit's properties (e.g. a source's position) go in each table's snapshot
        // summary too, so a table says on its own up to where it holds its source.
        self.catalog().sign(&mut request);
        let properties = crate::tables::snapshot_properties(&request);
        let mut bases: Vec<_> = changes.iter().map(|c| c.staged.table.clone()).collect();
        let mut backoff = Backoff::new();
        let mut synced = HashSet::new();
        loop {
            let at = Resolved {
                spec: branch.clone(),
                branch: Some(branch.clone()),
                commit: head.clone(),
            };
            let mut operations = Vec::new();
            let mut namespaces = BTreeSet::new();
            for (change, base) in changes.iter().zip(&bases) {
                let new_table = self.stage_change(base, &change.change, &properties).await?;
                self.make_durable(Some(base), &new_table, change.staged.created, &mut synced)
                    .await?;
                let location = new_table
                    .metadata_location_result()
                    .map_err(from_iceberg("staged table"))?
                    .to_string();
                if let Some(ns) = change.key.namespace()
                    && namespaces.insert(ns.clone())
                    && self.catalog().content(&at, &ns).await?.is_none()
                {
                    operations.push(Operation::Put {
                        key: ns,
                        content: Content::namespace(),
                    });
                }
                operations.push(Operation::Put {
                    key: change.key.clone(),
                    content: Content::table(location),
                });
            }
            let mut attempt_request = request.clone();
            attempt_request.expected_head = head.clone();
            attempt_request.operations = operations;
            match self.catalog().commit(attempt_request).await {
                Ok(commit) => return Ok(commit),
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    let spent = !backoff.next().await;
                    let current = self.catalog().resolve(&branch).await?;
                    let mut rebased = Vec::with_capacity(bases.len());
                    for (change, base) in changes.iter().zip(&bases) {
                        let conflict = basin_core::Error::new(e.kind(), e.message.clone());
                        rebased.push(
                            self.rebase_target(
                                &current,
                                &change.key,
                                &change.staged,
                                base,
                                conflict,
                            )
                            .await?,
                        );
                    }
                    bases = rebased;
                    if spent {
                        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                        return Err(out_of_attempts(
                            &keys.join("`, `"),
                            &branch,
                            backoff.attempt(),
                        ));
                    }
                    head = current.commit;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
