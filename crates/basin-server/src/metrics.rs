//! Prometheus metrics, in the text exposition format, kept by hand: a few counters do not
//! need a metrics library.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

mod render;
mod render_sql;

pub struct Metrics {
    started: Instant,
    inner: Mutex<Counters>,
    /// HTTP connections open now.
    connections: AtomicI64,
    /// Postgres connections open now.
    pg_connections: AtomicI64,
    /// Statements waiting for their reader's turn now (`crate::turns`).
    queries_waiting: Arc<AtomicU64>,
    runs_waiting: Arc<AtomicU64>,
    /// The SQL engine: memory held, queries stopped by a limit.
    sql: basin_sql::Engine,
    tables: basin_table::Tables,
    /// The function runtime's settings: invocations stopped by a `[functions]` limit.
    functions: basin_runtime::RuntimeOptions,
    /// The events this process ran.
    dispatcher: basin_service::dispatch::Dispatcher,
}

#[derive(Default)]
struct Counters {
    /// (method, route, status) -> (count, seconds)
    requests: BTreeMap<(String, String, u16), (u64, f64)>,
    queries: u64,
    query_errors: u64,
    query_rows: u64,
    query_seconds: f64,
    /// Requests and answers stopped by a `[server]` limit, by the limit's name.
    limits: BTreeMap<&'static str, u64>,
    maintenance: Maintenance,
    /// Change-data-capture sources `basin serve` streams, by name.
    sources: BTreeMap<String, SourceStream>,
}

/// Where one CDC source's stream stands.
#[derive(Default)]
struct SourceStream {
    lag_bytes: u64,
    lag_seconds: f64,
    changes: u64,
    stops: u64,
}

/// What the scheduled maintenance runs of this server did.
#[derive(Default)]
struct Maintenance {
    /// status -> runs
    runs: BTreeMap<String, u64>,
    files_compacted: u64,
    snapshots_expired: u64,
    files_removed: u64,
    bytes_removed: u64,
    seconds: f64,
    /// Unix seconds of the last run's end (0: none yet).
    last_finished: f64,
}

impl Metrics {
    pub fn new(
        sql: basin_sql::Engine,
        tables: basin_table::Tables,
        functions: basin_runtime::RuntimeOptions,
        dispatcher: basin_service::dispatch::Dispatcher,
    ) -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::new(Counters::default()),
            connections: AtomicI64::new(0),
            pg_connections: AtomicI64::new(0),
            queries_waiting: Arc::default(),
            runs_waiting: Arc::default(),
            sql,
            tables,
            functions,
            dispatcher,
        }
    }

    /// A connection opened (`1`) or closed (`-1`).
    pub fn connection(&self, delta: i64) {
        self.connections.fetch_add(delta, Ordering::Relaxed);
    }

    /// The gauge of statements waiting for their reader's turn, for `crate::turns` to keep.
    pub(crate) fn queries_waiting(&self) -> Arc<AtomicU64> {
        self.queries_waiting.clone()
    }

    /// The gauge of pipeline runs and deploys waiting for their writer's turn.
    pub(crate) fn runs_waiting(&self) -> Arc<AtomicU64> {
        self.runs_waiting.clone()
    }

    /// A Postgres connection opened (`1`) or closed (`-1`).
    pub fn pg_connection(&self, delta: i64) {
        self.pg_connections.fetch_add(delta, Ordering::Relaxed);
    }

    /// A request or answer stopped by the limit `name` (a `[server]` setting).
    /// [`Metrics::limit_hit`] as a function of its own (for parts that know no `Metrics`).
    pub(crate) fn limit_counter(
        self: &std::sync::Arc<Self>,
    ) -> std::sync::Arc<dyn Fn(&'static str) + Send + Sync> {
        let metrics = self.clone();
        std::sync::Arc::new(move |name| metrics.limit_hit(name))
    }

    pub fn limit_hit(&self, name: &'static str) {
        *self
            .inner
            .lock()
            .expect("metrics")
            .limits
            .entry(name)
            .or_default() += 1;
    }

    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut c = self.inner.lock().expect("metrics");
        let entry = c
            .requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        entry.0 += 1;
        entry.1 += seconds;
    }

    pub fn query(&self, rows: u64, seconds: f64, ok: bool) {
        let mut c = self.inner.lock().expect("metrics");
        c.queries += 1;
        c.query_errors += u64::from(!ok);
        c.query_rows += rows;
        c.query_seconds += seconds;
    }

    /// A scheduled maintenance run finished.
    pub fn maintenance(&self, run: &basin_service::MaintenanceRun) {
        let mut c = self.inner.lock().expect("metrics");
        let m = &mut c.maintenance;
        *m.runs.entry(run.status.clone()).or_default() += 1;
        m.files_compacted += run.files_compacted();
        m.snapshots_expired += run.snapshots_expired();
        if let Some(gc) = &run.gc {
            m.files_removed += gc.files_removed;
            m.bytes_removed += gc.bytes_removed;
        }
        m.seconds += run.seconds;
        m.last_finished = run.finished_at_ms.unwrap_or_default() as f64 / 1000.0;
    }

    /// A CDC source's stream moved on (see `basin_service::sources::cdc::run_sources`).
    pub fn source(&self, metric: basin_service::sources::cdc::SourceMetric) {
        use basin_service::sources::cdc::SourceMetric;
        let mut c = self.inner.lock().expect("metrics");
        match metric {
            SourceMetric::Lag {
                source,
                bytes,
                seconds,
            } => {
                let s = c.sources.entry(source).or_default();
                s.lag_bytes = bytes;
                s.lag_seconds = seconds;
            }
            SourceMetric::Changes { source, changes } => {
                c.sources.entry(source).or_default().changes += changes;
            }
            SourceMetric::Stopped { source } => {
                c.sources.entry(source).or_default().stops += 1;
            }
        }
    }
}
