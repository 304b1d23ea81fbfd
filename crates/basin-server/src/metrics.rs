//! Prometheus metrics, in the text exposition format, kept by hand: a few counters do not
//! need a metrics library.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

pub struct Metrics {
    started: Instant,
    inner: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    /// (method, route, status) -> (count, seconds)
    requests: BTreeMap<(String, String, u16), (u64, f64)>,
    queries: u64,
    query_errors: u64,
    query_rows: u64,
    query_seconds: f64,
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::new(Counters::default()),
        }
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

    pub fn render(&self) -> String {
        let c = self.inner.lock().expect("metrics");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP basin_up_seconds Seconds since the server started."
        );
        let _ = writeln!(out, "# TYPE basin_up_seconds gauge");
        let _ = writeln!(
            out,
            "basin_up_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );
        let _ = writeln!(
            out,
            "# HELP basin_http_requests_total HTTP requests by method, route and status."
        );
        let _ = writeln!(out, "# TYPE basin_http_requests_total counter");
        for ((method, route, status), (count, _)) in &c.requests {
            let _ = writeln!(
                out,
                "basin_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP basin_http_request_seconds_total Time spent serving requests."
        );
        let _ = writeln!(out, "# TYPE basin_http_request_seconds_total counter");
        for ((method, route, status), (_, seconds)) in &c.requests {
            let _ = writeln!(
                out,
                "basin_http_request_seconds_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {seconds:.6}"
            );
        }
        for (name, help, value) in [
            ("basin_queries_total", "SQL queries run.", c.queries as f64),
            (
                "basin_query_errors_total",
                "SQL queries that failed.",
                c.query_errors as f64,
            ),
            (
                "basin_query_rows_total",
                "Rows returned by SQL queries.",
                c.query_rows as f64,
            ),
            (
                "basin_query_seconds_total",
                "Time spent running SQL queries.",
                c.query_seconds,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
