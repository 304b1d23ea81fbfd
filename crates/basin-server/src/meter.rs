//! [`Meter`] meters a query when its answer ends, for every door that runs SQL (HTTP,
//! Postgres and `/mcp`): `basin usage` and the server's metrics. It also holds the query's
//! turn among its reader's (`crate::turns`) until then.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use basin_core::Error;
use basin_service::Lakehouse;
use datafusion::physical_plan::ExecutionPlan;

use crate::metrics::Metrics;
use crate::turns::Turn;

/// Meters one query when its answer ends (sent in full, failed, or abandoned by the
/// client): `basin usage` and the server's metrics.
pub(crate) struct Meter {
    via: &'static str,
    started: Instant,
    started_at_ms: i64,
    rows: AtomicU64,
    /// The answer went out to its end, or to a cap that cut it: otherwise, with no error,
    /// its client left first.
    ended: AtomicBool,
    error: Mutex<Option<String>>,
    plan: Mutex<Option<Arc<dyn ExecutionPlan>>>,
    metrics: Arc<Metrics>,
    lakehouse: Lakehouse,
    /// The reader's turn the query holds until its answer ends (`crate::turns`).
    turn: Mutex<Option<Arc<Turn>>>,
}

impl Meter {
    pub(crate) fn new(via: &'static str, lakehouse: Lakehouse, metrics: Arc<Metrics>) -> Self {
        Self {
            via,
            started: Instant::now(),
            started_at_ms: chrono::Utc::now().timestamp_millis(),
            rows: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            error: Mutex::new(None),
            plan: Mutex::new(None),
            metrics,
            lakehouse,
            turn: Mutex::new(None),
        }
    }

    /// Holds `turn` until the answer ends (with the other answers sharing it).
    pub(crate) fn hold(&self, turn: Arc<Turn>) {
        *self.turn.lock().expect("meter") = Some(turn);
    }

    /// The server's metrics, which the query's limits count on.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How long the query has run.
    pub(crate) fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub(crate) fn plan(&self, plan: Arc<dyn ExecutionPlan>) {
        *self.plan.lock().expect("meter") = Some(plan);
    }

    pub(crate) fn rows(&self, n: usize) {
        self.rows.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The answer went out to its end (or to a cap that cut it, which it says).
    pub(crate) fn ended(&self) {
        self.ended.store(true, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, e: &Error) {
        self.error
            .lock()
            .expect("meter")
            .get_or_insert_with(|| e.message.clone());
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let rows = self.rows.load(Ordering::Relaxed);
        let error = self.error.lock().expect("meter").take();
        let seconds = self.started.elapsed().as_secs_f64();
        let bytes_scanned = self
            .plan
            .lock()
            .expect("meter")
            .as_ref()
            .map_or(0, basin_sql::bytes_scanned);
        // A client that leaves is no failure of the query's (the metrics count it as ok),
        // but its record says so: its rows are not an answer.
        let ok = error.is_none();
        let left = ok && !self.ended.load(Ordering::Relaxed);
        self.metrics.query(rows, seconds, ok);
        tracing::info!(
            via = self.via,
            rows,
            seconds,
            ok,
            left,
            bytes_scanned,
            "query"
        );
        let usage = basin_service::QueryUsage {
            via: self.via,
            started_at_ms: self.started_at_ms,
            seconds,
            rows,
            bytes_scanned,
            error,
            abandoned: left,
        };
        let lakehouse = self.lakehouse.clone();
        tokio::spawn(async move {
            if let Err(e) = lakehouse.usage().record_query(usage).await {
                tracing::warn!("the query ran but could not be metered: {e}");
            }
        });
    }
}
