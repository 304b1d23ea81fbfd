//! The commit graph of every branch and tag (`basin log --graph`): the commits the refs reach,
//! newest first and each before its parents, with the refs that point at each. Run branches
//! (`run/ID`, one per pipeline run) are left out unless asked for: their commits still show
//! where a merge brought them in.

use std::collections::{BinaryHeap, HashMap};

use basin_catalog::CommitId;
use basin_core::Result;
use serde::{Deserialize, Serialize};

use super::refs::{LogEntry, RUN_BRANCH_PREFIX, Refs};

/// A commit in the graph, with the branches and tags at it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GraphEntry {
    #[serde(flatten)]
    pub commit: LogEntry,
    pub refs: Vec<String>,
}

impl Refs<'_> {
    /// The newest `limit` commits the branches and tags reach (run branches too with
    /// `runs`), in an order where each commit comes before its parents, newer first among
    /// the rest.
    pub async fn graph(&self, limit: usize, runs: bool) -> Result<Vec<GraphEntry>> {
        let mut commits: HashMap<CommitId, LogEntry> = HashMap::new();
        let mut refs: HashMap<CommitId, Vec<String>> = HashMap::new();
        let mut tips: Vec<(String, CommitId)> = Vec::new();
        for r in self.lake.catalog().list_refs().await? {
            if !runs && r.name.starts_with(RUN_BRANCH_PREFIX) {
                continue;
            }
            refs.entry(r.head.clone()).or_default().push(r.name.clone());
            tips.push((r.name, r.head));
        }
        // Each ref's first-parent line, then the lines merges brought in, read through the
        // ref (so its grants apply), until every parent within reach is known.
        while let Some((name, head)) = tips.pop() {
            if commits.contains_key(&head) {
                continue;
            }
            for entry in self.log(Some(&format!("{name}@{head}")), limit).await? {
                if let Some(merged) = &entry.merge_parent
                    && !commits.contains_key(merged)
                {
                    tips.push((name.clone(), merged.clone()));
                }
                if commits.contains_key(&entry.id) {
                    break;
                }
                commits.insert(entry.id.clone(), entry);
            }
        }
        let mut order = topological(&commits);
        order.truncate(limit);
        Ok(order
            .into_iter()
            .map(|id| GraphEntry {
                refs: refs.remove(&id).map(sorted).unwrap_or_default(),
                commit: commits.remove(&id).expect("a known commit"),
            })
            .collect())
    }
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// The commits in an order where each comes before its parents (Kahn's algorithm), the
/// newest first among those ready.
fn topological(commits: &HashMap<CommitId, LogEntry>) -> Vec<CommitId> {
    let parents = |e: &LogEntry| -> Vec<CommitId> {
        e.parent
            .iter()
            .chain(e.merge_parent.iter())
            .filter(|p| commits.contains_key(*p))
            .cloned()
            .collect()
    };
    let mut children: HashMap<&CommitId, usize> = commits.keys().map(|id| (id, 0)).collect();
    for entry in commits.values() {
        for parent in parents(entry) {
            *children.get_mut(&parent).expect("a known commit") += 1;
        }
    }
    let key = |id: &CommitId| (commits[id].created_at_ms, id.clone());
    let mut ready: BinaryHeap<(i64, CommitId)> = children
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| key(id))
        .collect();
    let mut order = Vec::with_capacity(commits.len());
    while let Some((_, id)) = ready.pop() {
        for parent in parents(&commits[&id]) {
            let n = children.get_mut(&parent).expect("a known commit");
            *n -= 1;
            if *n == 0 {
                ready.push(key(&parent));
            }
        }
        order.push(id);
    }
    order
}
