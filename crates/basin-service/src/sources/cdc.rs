//! Change data capture from database sources: `basin ingest NAME --follow`, the status
//! `basin source ls` shows, and the streams `basin serve` keeps running for `mode = "cdc"`
//! sources (see `basin_ingest::postgres::cdc`).

use std::time::Duration;

use basin_catalog::Key;
use basin_core::Result;
use basin_ingest::mysql::{self, cdc::MyFollowRequest};
use basin_ingest::postgres::LoadProgress;
use basin_ingest::postgres::cdc::{
    self, FollowProgress, FollowReport, FollowRequest, StreamOptions, slot,
};
use serde::Serialize;

use super::{Sources, source_branch};
use crate::Lakehouse;
use crate::config::sources::is_mysql;
use crate::config::{SourceConfig, SourceMode};

/// How `follow` runs.
pub struct FollowOptions {
    pub branch: Option<String>,
    /// Keep streaming until `stop`; else stop once caught up with the server.
    pub follow: bool,
    /// Start over with a full load (and a new slot) even if the tables hold a position.
    pub full: bool,
    pub skip_unsupported: bool,
    pub readers: Option<usize>,
}

/// Where a change-data-capture source stands (`basin source ls`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SourceStatus {
    pub slot: Option<String>,
    /// The last source commit LSN the tables hold.
    pub lsn: Option<String>,
    /// When Basin committed it (RFC 3339).
    pub last_commit: Option<String>,
    /// WAL bytes the slot has not had confirmed (`pg_current_wal_lsn() - confirmed_flush_lsn`).
    pub lag_bytes: Option<i64>,
    /// How long ago the oldest change not yet in the tables was committed at the source
    /// (0 when nothing waits).
    pub lag_seconds: Option<f64>,
    /// Why the server could not be asked, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Sources<'_> {
    /// Streams source `name`'s changes into its tables: a full load first if the tables hold
    /// no position on a live slot, then batches until `stop` (or until caught up).
    pub async fn follow(
        &self,
        name: &str,
        options: FollowOptions,
        stop: tokio::sync::watch::Receiver<bool>,
        load_progress: Option<LoadProgress>,
        progress: Option<FollowProgress>,
    ) -> Result<FollowReport> {
        let source = self.get(name)?;
        let stream = StreamOptions {
            branch: source_branch(&source, options.branch.as_deref()),
            batch_rows: source.batch_rows,
            batch_seconds: source.batch_seconds,
            max_transaction_changes: source.max_transaction_changes,
            follow: options.follow,
            full: options.full,
            skip_unsupported: options.skip_unsupported,
            stop,
            load_progress,
            progress,
        };
        if is_mysql(&source.url) {
            let request = MyFollowRequest {
                source: self.my_source(&source, options.readers)?,
                stream,
            };
            return mysql::cdc::follow_mysql(self.lake.iceberg_tables(), request).await;
        }
        let request = FollowRequest {
            source: self.pg_source(&source, options.readers)?,
            publication: source.publication.clone(),
            stream,
        };
        cdc::follow(self.lake.iceberg_tables(), request).await
    }

    /// What the tables and the server say about a CDC source.
    pub async fn status(&self, source: &SourceConfig) -> Result<SourceStatus> {
        if is_mysql(&source.url) {
            return self.mysql_status(source).await;
        }
        let pg = self.pg_source(source, None)?;
        let branch = source_branch(source, None);
        let (at, keys) = self.source_tables(source, &branch).await?;
        let stored =
            cdc::stored_position(self.lake.iceberg_tables(), &at, &source.name, &keys).await?;
        let mut status = SourceStatus {
            lsn: stored.position.as_ref().map(|p| slot::format_lsn(p.lsn)),
            last_commit: stored
                .basin_commit_ms
                .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339())),
            ..Default::default()
        };
        match slot::source_slot_lag(&pg, &source.publication).await {
            Ok(Some((state, lag_seconds))) => {
                status.slot = Some(slot::slot_name(&source.name));
                status.lag_bytes = state.lag_bytes;
                status.lag_seconds = Some(lag_seconds);
            }
            Ok(None) => {}
            Err(e) => status.error = Some(e.to_string()),
        }
        Ok(status)
    }
}

impl Sources<'_> {
    /// The branch's head and the tables of `source`'s namespace on it: those of this source
    /// record it in their snapshots.
    async fn source_tables(
        &self,
        source: &SourceConfig,
        branch: &str,
    ) -> Result<(basin_catalog::Resolved, Vec<Key>)> {
        let at = self.lake.catalog().resolve(branch).await?;
        let ns = Key::parse(&source.namespace)?;
        let keys: Vec<Key> = self
            .lake
            .catalog()
            .contents(&at)
            .await?
            .into_iter()
            .filter(|(key, content)| {
                key.namespace().as_ref() == Some(&ns)
                    && matches!(content, basin_catalog::Content::Table { .. })
            })
            .map(|(key, _)| key)
            .collect();
        Ok((at, keys))
    }

    /// Where a MySQL source stands: the binary log position the tables hold, and how far the
    /// server's log is past it (bytes when in the same file; seconds since the last
    /// transaction applied committed at the source, while the log is past it).
    async fn mysql_status(&self, source: &SourceConfig) -> Result<SourceStatus> {
        let branch = source_branch(source, None);
        let (at, keys) = self.source_tables(source, &branch).await?;
        let stored =
            mysql::cdc::stored_binlog(self.lake.iceberg_tables(), &at, &source.name, &keys).await?;
        let mut status = SourceStatus {
            lsn: stored.position.as_ref().map(ToString::to_string),
            last_commit: stored
                .basin_commit_ms
                .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339())),
            ..Default::default()
        };
        let my = self.my_source(source, None)?;
        let server = mysql::cdc::source_position(&my)
            .await
            .map_err(|e| e.to_string());
        match (server, &stored.position) {
            (Ok(Some(now)), Some(held)) => {
                let behind = now > *held;
                status.lag_bytes =
                    (now.file == held.file).then(|| now.offset.saturating_sub(held.offset) as i64);
                let since = stored.source_commit_ms.or(stored.basin_commit_ms);
                status.lag_seconds = Some(match (behind, since) {
                    (true, Some(ms)) => {
                        ((chrono::Utc::now().timestamp_millis() - ms) as f64 / 1e3).max(0.0)
                    }
                    _ => 0.0,
                });
            }
            (Ok(_), _) => {}
            (Err(e), _) => status.error = Some(e),
        }
        Ok(status)
    }
}

/// A CDC stream's progress, for metrics.
#[derive(Clone, Debug)]
pub enum SourceMetric {
    Lag {
        source: String,
        bytes: u64,
        seconds: f64,
    },
    Changes {
        source: String,
        changes: u64,
    },
    /// The stream stopped on an error (it restarts after a backoff).
    Stopped {
        source: String,
    },
}

/// Streams every `mode = "cdc"` source until `stopped`: a task per source, restarted with
/// backoff (1 s doubling to 60 s) after an error, each error logged. A stop lets the batch
/// in progress commit.
pub async fn run_sources(
    lakehouse: Lakehouse,
    stopped: tokio::sync::watch::Receiver<bool>,
    observe: std::sync::Arc<dyn Fn(SourceMetric) + Send + Sync>,
) {
    let sources: Vec<SourceConfig> = lakehouse
        .sources()
        .list()
        .into_iter()
        .filter(|s| s.mode == SourceMode::Cdc)
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for source in sources {
        let lakehouse = lakehouse.clone();
        let stopped = stopped.clone();
        let observe = observe.clone();
        tasks.spawn(async move {
            let name = source.name.clone();
            let mut backoff = Duration::from_secs(1);
            loop {
                let observed = observe.clone();
                let metric_source = name.clone();
                let progress: FollowProgress = std::sync::Arc::new(move |event| match event {
                    cdc::FollowEvent::Batch(batch) => {
                        observed(SourceMetric::Changes {
                            source: metric_source.clone(),
                            changes: batch.changes,
                        });
                        observed(SourceMetric::Lag {
                            source: metric_source.clone(),
                            bytes: 0,
                            seconds: batch.lag_seconds,
                        });
                    }
                    cdc::FollowEvent::Lag {
                        lag_bytes,
                        lag_seconds,
                    } => observed(SourceMetric::Lag {
                        source: metric_source.clone(),
                        bytes: lag_bytes,
                        seconds: lag_seconds,
                    }),
                    cdc::FollowEvent::Loaded(_) => {}
                });
                let options = FollowOptions {
                    branch: None,
                    follow: true,
                    full: false,
                    skip_unsupported: false,
                    readers: None,
                };
                // One node streams a source at a time (Postgres lets one session hold a
                // slot): the holder of its lease, which it renews while it streams.
                let Some(lease) = SourceLease::take(&lakehouse, &name, &stopped).await else {
                    return;
                };
                tracing::info!(source = %name, node = crate::queue::node_name(), "streaming changes");
                let result = lakehouse
                    .sources()
                    .follow(&name, options, lease.until_lost(), None, Some(progress))
                    .await;
                drop(lease);
                if *stopped.borrow() {
                    return;
                }
                match result {
                    Ok(_) => backoff = Duration::from_secs(1),
                    Err(e) => {
                        observe(SourceMetric::Stopped {
                            source: name.clone(),
                        });
                        tracing::error!(source = %name, error = %e, hint = e.hint.as_deref().unwrap_or(""), retry_in_s = backoff.as_secs(), "change data capture stopped");
                    }
                }
                let mut stop = stopped.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// How long a node holds a CDC source's lease without renewing it; renewed every third.
const SOURCE_LEASE: Duration = Duration::from_secs(30);

/// A CDC source's lease, renewed in the background while it is held; its
/// [`until_lost`](Self::until_lost) turns true when the lease is lost or the node stops.
struct SourceLease {
    lost: tokio::sync::watch::Receiver<bool>,
    renew: tokio::task::JoinHandle<()>,
}

impl Drop for SourceLease {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

impl SourceLease {
    /// Waits until this node holds the lease of source `name`; `None` once `stopped`.
    async fn take(
        lakehouse: &Lakehouse,
        name: &str,
        stopped: &tokio::sync::watch::Receiver<bool>,
    ) -> Option<Self> {
        let lease = format!("cdc:{name}");
        let store = lakehouse.catalog().store().clone();
        let node = crate::queue::node_name();
        let try_lease = move |store: std::sync::Arc<dyn basin_catalog::Store>, lease: String| async move {
            let now = chrono::Utc::now().timestamp_millis();
            let until = now + SOURCE_LEASE.as_millis() as i64;
            store.try_lease(&lease, node, now, until).await
        };
        let mut waited = false;
        loop {
            match try_lease(store.clone(), lease.clone()).await {
                Ok(true) => break,
                Ok(false) if !waited => {
                    tracing::info!(
                        source = name,
                        "another node streams this source; waiting to take over"
                    );
                    waited = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(source = name, "cannot take the source's lease: {e}"),
            }
            let mut stop = stopped.clone();
            tokio::select! {
                _ = tokio::time::sleep(SOURCE_LEASE / 3) => {}
                _ = stop.wait_for(|s| *s) => return None,
            }
        }
        let (lost_tx, lost) = tokio::sync::watch::channel(false);
        let mut stop = stopped.clone();
        let source = name.to_string();
        let renew = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(SOURCE_LEASE / 3) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                match try_lease(store.clone(), lease.clone()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(
                            source,
                            "lost the source's lease to another node: stopping this stream"
                        );
                        break;
                    }
                    // The catalog may be back before the lease runs out: try again.
                    Err(e) => tracing::warn!(source, "cannot renew the source's lease: {e}"),
                }
            }
            let _ = lost_tx.send(true);
        });
        Some(Self { lost, renew })
    }

    fn until_lost(&self) -> tokio::sync::watch::Receiver<bool> {
        self.lost.clone()
    }
}
