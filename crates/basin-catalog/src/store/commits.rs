//! Refs, commits and the trees they point at: the versioned catalog itself.
//!
//! `commit` is the only way contents change, and it is a compare-and-swap on the branch
//! head with re-base: see [`CommitRequest`].

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::history::{HistoryCut, HistoryPruned, HistoryRetention};
use crate::model::{Commit, CommitId, CommitRequest, Content, Key, Ref, RefKind};
use basin_core::Result;

#[async_trait]
pub trait Commits: Send + Sync {
    async fn list_refs(&self) -> Result<Vec<Ref>>;

    async fn get_ref(&self, name: &str) -> Result<Option<Ref>>;

    /// Fails with `AlreadyExists` if the name is taken by a branch or a tag.
    async fn create_ref(&self, name: &str, kind: RefKind, at: &CommitId) -> Result<Ref>;

    /// Fails with `NotFound` if there is no such ref.
    async fn delete_ref(&self, name: &str) -> Result<()>;

    /// Applies a commit atomically; see [`CommitRequest`] for the re-base rule.
    async fn commit(&self, request: CommitRequest) -> Result<Commit>;

    async fn get_commit(&self, id: &CommitId) -> Result<Option<Commit>>;

    /// Commit ids starting with `prefix` (at most `limit`), for short ids.
    async fn commits_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<CommitId>>;

    /// `from` and its first-parent ancestors, newest first.
    async fn log(&self, from: &CommitId, limit: usize) -> Result<Vec<Commit>>;

    /// True when `ancestor` is reachable from `descendant` through any parent.
    async fn is_ancestor(&self, ancestor: &CommitId, descendant: &CommitId) -> Result<bool>;

    /// The newest common ancestor of two commits.
    async fn merge_base(&self, a: &CommitId, b: &CommitId) -> Result<Option<CommitId>>;

    /// Everything the commit points at.
    async fn contents(&self, at: &CommitId) -> Result<BTreeMap<Key, Content>>;

    /// Every table's `metadata.json` any commit points at, each once, but those of the
    /// commits in `except`: what garbage collection keeps.
    async fn all_metadata_locations(&self, except: &[CommitId]) -> Result<Vec<String>>;

    /// Removes from the log the commits `retention` does not keep (the rule is
    /// [`crate::history::plan`]), their contents and parent edges, linking kept commits to
    /// their nearest kept ancestors and recording where each chain was cut. One transaction,
    /// so no ref can be made on a commit being removed. `dry_run`: only count.
    async fn prune_history(
        &self,
        retention: &HistoryRetention,
        dry_run: bool,
    ) -> Result<HistoryPruned>;

    /// Where history was cut at `at`, if it was: the commits before it were removed.
    async fn history_cut(&self, at: &CommitId) -> Result<Option<HistoryCut>>;

    async fn content(&self, at: &CommitId, key: &Key) -> Result<Option<Content>>;
}
