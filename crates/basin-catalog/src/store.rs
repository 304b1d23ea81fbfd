//! The persistence boundary of the catalog. One trait, one transaction per write.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::events::{
    DueEvents, EventCounts, EventFilter, EventOutcome, EventRecord, EventsPruned, NewEvent, Settled,
};
use crate::history::{HistoryCut, HistoryPruned, HistoryRetention};
use crate::model::TokenRecord;
use crate::model::{Commit, CommitId, CommitRequest, Content, Key, Ref, RefKind};
use crate::postgres::PgStore;
use crate::sqlite::SqlStore;
use basin_core::InvocationRecord;
use basin_core::Result;

/// Opens the catalog at `location`: a `postgres://` or `postgresql://` URL is a Postgres
/// database ([`PgStore`], shared by several nodes), anything else the path of a SQLite file
/// ([`SqlStore`], created if missing). Call [`Store::initialize`] before use.
pub async fn open_store(location: &str) -> Result<Arc<dyn Store>> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(location).await?))
    } else {
        Ok(Arc::new(SqlStore::open(Path::new(location)).await?))
    }
}

/// Where commits and refs live. `SqlStore` serves SQLite (embedded, and in memory for
/// tests); `PgStore` serves Postgres, for several nodes sharing one catalog.
///
/// Every method is one transaction. `commit` is the only way contents change, and it is a
/// compare-and-swap on the branch head with re-base: see [`CommitRequest`].
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Creates the schema, the root commit and `main` if the store is new. Idempotent.
    async fn initialize(&self) -> Result<()>;

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

    /// Records a finished function invocation (metering).
    async fn record_invocation(&self, record: &InvocationRecord) -> Result<()>;
    /// Invocations started at or after `since_ms`, oldest first.
    async fn invocations(&self, since_ms: i64) -> Result<Vec<InvocationRecord>>;

    /// Saves (or replaces) a pipeline run's record, a JSON document owned by the service.
    async fn save_run(&self, id: &str, started_at_ms: i64, record: &str) -> Result<()>;
    /// The newest runs' records, newest first.
    async fn runs(&self, limit: usize) -> Result<Vec<String>>;
    /// Records of the runs whose id starts with `prefix`, newest first (at most 11: enough to
    /// list the candidates of an ambiguous prefix, and to say there are more).
    async fn runs_with_prefix(&self, prefix: &str) -> Result<Vec<String>>;
    /// Deletes the records of these runs; returns how many there were.
    async fn delete_runs(&self, ids: &[String]) -> Result<u64>;

    /// Saves (or replaces) a maintenance run's record, a JSON document owned by the service.
    async fn save_maintenance(&self, id: &str, started_at_ms: i64, record: &str) -> Result<()>;
    /// The newest maintenance runs' records, newest first.
    async fn maintenance_runs(&self, limit: usize) -> Result<Vec<String>>;
    /// Deletes the records of maintenance runs started before `before_ms`; returns how many.
    async fn delete_maintenance_before(&self, before_ms: i64) -> Result<u64>;

    /// Stores a new access token (its hash, never the secret).
    async fn create_token(&self, token: &TokenRecord) -> Result<()>;
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// Fails with `NotFound` if there is no such token.
    async fn delete_token(&self, id: &str) -> Result<()>;

    /// Stores events not stored yet (by id); returns how many were new.
    async fn enqueue_events(&self, events: &[NewEvent]) -> Result<usize>;
    /// Leases up to `limit` due events of `function` until `lease_until_ms` to `node` (a
    /// name for the process claiming them, recorded with each event).
    async fn claim_events(
        &self,
        function: &str,
        limit: usize,
        now_ms: i64,
        lease_until_ms: i64,
        node: &str,
    ) -> Result<Vec<EventRecord>>;
    /// Wake-ups when any node queues or retries events (the function's name), where the
    /// store can tell (Postgres: LISTEN); `None`: only this process's own.
    async fn event_wakeups(&self) -> Result<Option<crate::EventWakeups>> {
        Ok(None)
    }
    /// Moves the leases of the running events among `ids` to `lease_until_ms`: the dispatcher
    /// still works on them.
    async fn renew_leases(&self, ids: &[String], lease_until_ms: i64) -> Result<()>;
    /// Records how attempt `attempt` (the event's `attempts` when it was claimed) ended. An
    /// outcome from an older attempt is dropped: after a lease ran out and another worker
    /// took the event, only that newer attempt may settle it.
    async fn finish_event(&self, id: &str, attempt: u32, outcome: &EventOutcome) -> Result<()> {
        let settled = Settled {
            id: id.to_string(),
            attempt,
            outcome: outcome.clone(),
        };
        self.finish_events(std::slice::from_ref(&settled)).await
    }
    /// Records how several attempts ended (each as [`Store::finish_event`] would), in one
    /// transaction: a batch's events settle with one flush of the log, not one each.
    async fn finish_events(&self, settled: &[Settled]) -> Result<()>;
    /// How many of `function`'s events may run at `now_ms`, and when the next one may.
    async fn due_events(&self, function: &str, now_ms: i64) -> Result<DueEvents>;
    /// Newest first.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>>;
    async fn event_counts(&self, function: Option<&str>) -> Result<EventCounts>;
    /// Events whose id starts with `prefix` (at most 2).
    async fn events_with_prefix(&self, prefix: &str) -> Result<Vec<EventRecord>>;
    /// Makes failed or dead events pending again (`None`: every dead one).
    async fn retry_events(&self, ids: Option<&[String]>) -> Result<usize>;
    /// Prunes the events that succeeded before `before_ms` (see [`EventsPruned`]); failed,
    /// dead, pending and running events stay.
    async fn prune_events(&self, before_ms: i64, dry_run: bool) -> Result<EventsPruned>;

    /// Saves (or replaces) a deployed function's record, a JSON document owned by the service.
    async fn save_function(&self, name: &str, record: &str) -> Result<()>;
    /// Where trigger source `name` got to (`schedule:FUNCTION`: its last slot;
    /// `s3:BUCKET`: its listing watermark), in Unix milliseconds.
    async fn cursor(&self, name: &str) -> Result<Option<i64>>;
    async fn set_cursor(&self, name: &str, value: i64) -> Result<()>;
    /// Stores `value` as setting `name` unless it has one already; returns the stored value.
    /// What every node of a lakehouse must agree on (its warehouse) is fixed this way, once.
    async fn fix_setting(&self, name: &str, value: &str) -> Result<String>;
    async fn setting(&self, name: &str) -> Result<Option<String>>;
    /// Takes lease `name` for `holder` until `until_ms` if it is free (never taken, or run
    /// out by `now_ms`) or `holder`'s already (a renewal); true if `holder` holds it now.
    /// For work one node of several should do at a time: listing a bucket, maintenance.
    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64)
    -> Result<bool>;
    /// Ends lease `name` if `holder` holds it (its row goes; a lease held by another stays).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    async fn functions(&self) -> Result<Vec<String>>;
    /// Fails with `NotFound` if there is no such function.
    async fn delete_function(&self, name: &str) -> Result<()>;
}
