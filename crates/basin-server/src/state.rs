//! What every HTTP handler and middleware shares: the lakehouse, the metrics, the event
//! dispatcher and the `[server]` limits ([`AppState`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use basin_service::dispatch::Dispatcher;
use basin_service::{Lakehouse, ServerSettings};

use crate::hosts::Hosts;
use crate::metrics::Metrics;
use crate::refusals::Refusals;
use crate::turns::{self, Turns};

/// What the Postgres door shares with the HTTP doors: each token's turns among the
/// statements it runs, and the audit log's budget of refusals.
#[derive(Clone)]
#[cfg_attr(not(feature = "postgres-wire"), allow(dead_code))]
pub(crate) struct Shared {
    pub turns: Turns,
    pub refusals: Arc<Refusals>,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub lakehouse: Lakehouse,
    pub metrics: Arc<Metrics>,
    /// Requests need no token (loopback only).
    pub open: bool,
    /// Runs triggered functions (started by `serve`); HTTP calls queue events for it.
    pub dispatcher: Dispatcher,
    /// The names requests may give in `Host`.
    pub hosts: Hosts,
    /// `[server]` in basin.toml: limits on what callers may make the server do.
    pub limits: ServerSettings,
    /// Uploads received at once (`[server] max_uploads`).
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// Each reader's turns among the statements it runs at once (`[server]
    /// max_queries_per_reader`), shared by every door that runs SQL.
    pub turns: Turns,
    /// Each writer's turns among the pipeline runs and deploys it has going at once
    /// (`[server] max_runs_per_writer`), shared by HTTP and `/mcp`.
    pub runs: Turns,
    /// Each writer's uploads at once (`[server] max_uploads_per_writer`).
    pub uploads_per_writer: Turns,
    /// Refused requests the audit log records one by one each minute (`[server]
    /// audit_refusals_per_minute`).
    pub refusals: Arc<Refusals>,
    /// When runs whose process died were last settled (`settle_runs`).
    pub runs_settled: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

impl AppState {
    pub(crate) fn new(
        lakehouse: Lakehouse,
        open: bool,
        listen: Option<SocketAddr>,
        dispatcher: Dispatcher,
    ) -> Self {
        let limits = lakehouse.settings().server.clone();
        let metrics = Arc::new(Metrics::new(
            lakehouse.sql().clone(),
            lakehouse.iceberg_tables().clone(),
            lakehouse.settings().runtime.clone(),
            dispatcher.clone(),
        ));
        Self {
            hosts: Hosts::new(listen, limits.allowed_hosts.clone()),
            turns: Turns::new(
                turns::QUERIES,
                limits.max_queries_per_reader,
                metrics.limit_counter(),
                metrics.queries_waiting(),
            ),
            runs: Turns::new(
                turns::RUNS,
                limits.max_runs_per_writer,
                metrics.limit_counter(),
                metrics.runs_waiting(),
            ),
            // None waits: its gauge stays 0 and is not shown.
            uploads_per_writer: Turns::new(
                turns::UPLOADS,
                limits.max_uploads_per_writer,
                metrics.limit_counter(),
                Arc::default(),
            ),
            refusals: Arc::new(Refusals::new(
                limits.audit_refusals_per_minute,
                metrics.limit_counter(),
            )),
            metrics,
            dispatcher,
            lakehouse,
            open,
            uploads: Arc::new(tokio::sync::Semaphore::new(limits.max_uploads)),
            limits,
            runs_settled: Arc::default(),
        }
    }

    /// One of the acting writer's turns for a run or deploy (`crate::turns`), waited for at
    /// most its request's time limit less a second, so that the wait's own error, naming
    /// `max_runs_per_writer`, is the one its client gets.
    pub(crate) async fn run_turn(&self) -> basin_core::Result<Arc<crate::turns::Turn>> {
        let wait = self
            .limits
            .request_timeout
            .map(|limit| limit.saturating_sub(Duration::from_secs(1)).max(limit / 2));
        self.runs.take_within(wait).await
    }

    /// What the Postgres door shares with the HTTP doors.
    pub(crate) fn shared(&self) -> Shared {
        Shared {
            turns: self.turns.clone(),
            refusals: self.refusals.clone(),
        }
    }

    /// Settles the runs whose process died before a caller reads runs, as `basin runs` does
    /// locally; at most once per `SETTLE_EVERY`, since it reads every run record, and one
    /// caller at a time. A failure is logged: the records are listed as they are.
    pub(crate) async fn settle_runs(&self) {
        const SETTLE_EVERY: Duration = Duration::from_secs(5);
        let mut last = self.runs_settled.lock().await;
        if last.is_some_and(|at| at.elapsed() < SETTLE_EVERY) {
            return;
        }
        if let Err(e) = self.lakehouse.pipelines().settle_abandoned_runs().await {
            tracing::warn!("cannot settle runs whose process died: {e}");
        }
        *last = Some(Instant::now());
    }
}
