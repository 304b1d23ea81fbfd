//! Catalog history retention: which commits the log keeps, decided on the commit graph alone
//! so that every store applies the same rule (see [`crate::Store::prune_history`]).
//!
//! Kept:
//! - every ref's head (a branch that has not moved for a year still reads), and every
//!   ancestor reached from a head through commits no older than the cutoff: a chain is cut at
//!   its first commit older than the retention;
//! - every tag's head, forever (a tag is a head that never moves);
//! - the merge base of every branch with every other ref, so a later merge stays three-way
//!   (it reads the base's tables);
//! - the commits the caller names (the commits running pipeline runs read).
//!
//! The rest is dropped. A kept commit whose parent is dropped is linked to its nearest kept
//! ancestors instead (a graft), so ancestry and merge bases among kept commits stay what they
//! were; when its first parent is dropped, the log marks it as the place history was cut.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::model::{CommitId, Ref, RefKind};

/// What a history prune is asked to keep.
#[derive(Clone, Debug)]
pub struct HistoryRetention {
    /// Commits created before this (Unix milliseconds) may go.
    pub cutoff_ms: i64,
    /// Commits kept whatever their age.
    pub keep: Vec<CommitId>,
    /// Why, for the log's cut line: e.g. `keep_history = 30d`.
    pub note: String,
}

/// What a prune did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistoryPruned {
    pub commits_kept: u64,
    pub commits_removed: u64,
    /// Commits that became the oldest of their chain in this prune.
    pub cut_at: Vec<CommitId>,
    /// The removed commits (what a dry run's mark must leave out).
    #[serde(skip)]
    pub removed: Vec<CommitId>,
}

/// Where a ref's history was cut: the commits before `commit` were removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryCut {
    pub commit: CommitId,
    pub removed_at_ms: i64,
    pub note: String,
}

/// One commit of the graph a store hands to [`plan`].
#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    /// As `commits.parent` says (it may name a commit already removed).
    pub first_parent: Option<String>,
    /// Every parent edge, grafts of earlier prunes included.
    pub parents: Vec<String>,
    pub created_at_ms: i64,
    /// Insertion order: the newest of several common ancestors is the merge base.
    pub seq: i64,
}

/// What a store does to apply a retention.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub kept: HashSet<String>,
    pub removed: Vec<String>,
    /// Parent edges of kept commits that go (their parent is removed) ...
    pub cut_edges: Vec<(String, String)>,
    /// ... and the edges to their nearest kept ancestors that replace them.
    pub grafts: Vec<(String, String)>,
    /// Kept commits whose first parent is removed now.
    pub cuts: Vec<String>,
}

/// The commit graph as a store reads it: every parent edge `(child, parent)`, and every
/// commit as `(id, first parent, created_at_ms, seq)`.
pub(crate) fn graph(
    edges: Vec<(String, String)>,
    commits: Vec<(String, Option<String>, i64, i64)>,
) -> Vec<Node> {
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    for (child, parent) in edges {
        parents.entry(child).or_default().push(parent);
    }
    commits
        .into_iter()
        .map(|(id, first_parent, created_at_ms, seq)| Node {
            parents: parents.remove(&id).unwrap_or_default(),
            first_parent,
            created_at_ms,
            seq,
            id,
        })
        .collect()
}

impl Plan {
    /// What applying this plan does, as a prune reports it.
    pub(crate) fn report(&self) -> HistoryPruned {
        HistoryPruned {
            commits_kept: self.kept.len() as u64,
            commits_removed: self.removed.len() as u64,
            cut_at: self
                .cuts
                .iter()
                .cloned()
                .map(CommitId::from_string)
                .collect(),
            removed: self
                .removed
                .iter()
                .cloned()
                .map(CommitId::from_string)
                .collect(),
        }
    }
}

/// Decides which commits of `nodes` `retention` keeps; see the module docs.
pub fn plan(nodes: &[Node], refs: &[Ref], retention: &HistoryRetention) -> Plan {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let parents: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            n.parents
                .iter()
                .filter_map(|p| index.get(p.as_str()).copied())
                .collect()
        })
        .collect();
    let mut kept = vec![false; nodes.len()];
    let heads: Vec<(usize, RefKind)> = refs
        .iter()
        .filter_map(|r| index.get(r.head.as_str()).map(|&i| (i, r.kind)))
        .collect();
    let mut stack: Vec<usize> = heads.iter().map(|(i, _)| *i).collect();
    stack.extend(
        retention
            .keep
            .iter()
            .filter_map(|c| index.get(c.as_str()).copied()),
    );
    for &i in &stack {
        kept[i] = true;
    }
    while let Some(i) = stack.pop() {
        for &p in &parents[i] {
            if !kept[p] && nodes[p].created_at_ms >= retention.cutoff_ms {
                kept[p] = true;
                stack.push(p);
            }
        }
    }
    // Merge bases of every branch with every other ref.
    let mut distinct: Vec<(usize, RefKind)> = Vec::new();
    for head in heads {
        match distinct.iter_mut().find(|(i, _)| *i == head.0) {
            Some(seen) if head.1 == RefKind::Branch => seen.1 = RefKind::Branch,
            Some(_) => {}
            None => distinct.push(head),
        }
    }
    let ancestry: Vec<HashSet<usize>> = distinct
        .iter()
        .map(|(i, _)| ancestors(*i, &parents))
        .collect();
    for (a, (_, kind)) in distinct.iter().enumerate() {
        if *kind != RefKind::Branch {
            continue;
        }
        for b in 0..distinct.len() {
            if a == b {
                continue;
            }
            let base = ancestry[a]
                .intersection(&ancestry[b])
                .max_by_key(|&&i| nodes[i].seq);
            if let Some(&base) = base {
                kept[base] = true;
            }
        }
    }

    let mut out = Plan::default();
    for (i, node) in nodes.iter().enumerate() {
        if !kept[i] {
            out.removed.push(node.id.clone());
            continue;
        }
        out.kept.insert(node.id.clone());
        if node
            .first_parent
            .as_deref()
            .and_then(|p| index.get(p))
            .is_some_and(|&p| !kept[p])
        {
            out.cuts.push(node.id.clone());
        }
        let mut grafted = HashSet::new();
        for &p in &parents[i] {
            if kept[p] {
                continue;
            }
            out.cut_edges.push((node.id.clone(), nodes[p].id.clone()));
            for k in nearest_kept(p, &parents, &kept) {
                if grafted.insert(k) && !parents[i].contains(&k) {
                    out.grafts.push((node.id.clone(), nodes[k].id.clone()));
                }
            }
        }
    }
    out
}

/// `from` and every commit it descends from.
fn ancestors(from: usize, parents: &[Vec<usize>]) -> HashSet<usize> {
    let mut seen = HashSet::from([from]);
    let mut stack = vec![from];
    while let Some(i) = stack.pop() {
        for &p in &parents[i] {
            if seen.insert(p) {
                stack.push(p);
            }
        }
    }
    seen
}

/// The kept commits reached from the removed commit `from` through removed commits only.
fn nearest_kept(from: usize, parents: &[Vec<usize>], kept: &[bool]) -> Vec<usize> {
    let mut seen = HashSet::from([from]);
    let mut stack = vec![from];
    let mut found = Vec::new();
    while let Some(i) = stack.pop() {
        for &p in &parents[i] {
            if !seen.insert(p) {
                continue;
            }
            if kept[p] {
                found.push(p);
            } else {
                stack.push(p);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits `c0..` with their first parent and merge parent, created at `t` (seq = index).
    fn graph(spec: &[(Option<usize>, Option<usize>, i64)]) -> Vec<Node> {
        spec.iter()
            .enumerate()
            .map(|(i, (parent, merge, t))| Node {
                id: format!("c{i}"),
                first_parent: parent.map(|p| format!("c{p}")),
                parents: parent
                    .iter()
                    .chain(merge.iter())
                    .map(|p| format!("c{p}"))
                    .collect(),
                created_at_ms: *t,
                seq: i as i64,
            })
            .collect()
    }

    fn r(name: &str, kind: RefKind, head: usize) -> Ref {
        Ref {
            name: name.into(),
            kind,
            head: CommitId::from_string(format!("c{head}")),
        }
    }

    fn keep(cutoff_ms: i64) -> HistoryRetention {
        HistoryRetention {
            cutoff_ms,
            keep: Vec::new(),
            note: String::new(),
        }
    }

    fn sorted(set: &HashSet<String>) -> Vec<&str> {
        let mut v: Vec<&str> = set.iter().map(String::as_str).collect();
        v.sort();
        v
    }

    #[test]
    fn a_chain_is_cut_at_its_first_commit_older_than_the_retention() {
        // c0 <- c1 <- c2 <- c3 (main), times 0, 10, 20, 30; keep from 15.
        let nodes = graph(&[
            (None, None, 0),
            (Some(0), None, 10),
            (Some(1), None, 20),
            (Some(2), None, 30),
        ]);
        let p = plan(&nodes, &[r("main", RefKind::Branch, 3)], &keep(15));
        assert_eq!(sorted(&p.kept), ["c2", "c3"]);
        assert_eq!(p.removed, ["c0", "c1"]);
        assert_eq!(p.cuts, ["c2"]);
        assert_eq!(p.cut_edges, [("c2".to_string(), "c1".to_string())]);
        assert!(p.grafts.is_empty());
    }

    #[test]
    fn an_old_head_and_an_old_tag_stay() {
        // c0 <- c1 (tag v1) <- c2 (branch stale) ; main at c3 from c0; all old.
        let nodes = graph(&[
            (None, None, 0),
            (Some(0), None, 1),
            (Some(1), None, 2),
            (Some(0), None, 3),
        ]);
        let refs = [
            r("v1", RefKind::Tag, 1),
            r("stale", RefKind::Branch, 2),
            r("main", RefKind::Branch, 3),
        ];
        let p = plan(&nodes, &refs, &keep(100));
        // c0 is the merge base of main with stale and v1: kept, and grafted to nothing new.
        assert_eq!(sorted(&p.kept), ["c0", "c1", "c2", "c3"]);
        assert!(p.removed.is_empty());
    }

    #[test]
    fn a_merge_base_stays_and_kept_commits_are_grafted_onto_it() {
        // c0 (fork) <- c1 <- c2 <- c3 (main); c0 <- c4 <- c5 (dev). Keep from 25: c3 and c5
        // are young; c0 is the merge base of main and dev, c1, c2, c4 go.
        let nodes = graph(&[
            (None, None, 0),
            (Some(0), None, 10),
            (Some(1), None, 20),
            (Some(2), None, 30),
            (Some(0), None, 15),
            (Some(4), None, 40),
        ]);
        let refs = [r("main", RefKind::Branch, 3), r("dev", RefKind::Branch, 5)];
        let p = plan(&nodes, &refs, &keep(25));
        assert_eq!(sorted(&p.kept), ["c0", "c3", "c5"]);
        assert_eq!(p.removed, ["c1", "c2", "c4"]);
        let mut grafts = p.grafts.clone();
        grafts.sort();
        assert_eq!(
            grafts,
            [
                ("c3".to_string(), "c0".to_string()),
                ("c5".to_string(), "c0".to_string())
            ]
        );
        assert_eq!(p.cuts, ["c3", "c5"]);
    }

    #[test]
    fn commits_the_caller_names_stay() {
        let nodes = graph(&[(None, None, 0), (Some(0), None, 1), (Some(1), None, 2)]);
        let retention = HistoryRetention {
            keep: vec![CommitId::from_string("c1")],
            ..keep(100)
        };
        let p = plan(&nodes, &[r("main", RefKind::Branch, 2)], &retention);
        assert_eq!(sorted(&p.kept), ["c1", "c2"]);
    }
}
