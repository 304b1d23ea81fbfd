//! `/metrics` in Prometheus' text format, section by section.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{Counters, Maintenance, Metrics, SourceStream};

impl Metrics {
    pub fn render(&self) -> String {
        let c = self.inner.lock().expect("metrics");
        let mut out = String::new();
        self.render_requests(&c, &mut out);
        render_queries(&c, &mut out);
        self.render_sql(&mut out);
        self.render_sql_reads(&mut out);
        self.render_sql_columns(&mut out);
        self.render_connections(&mut out);
        self.render_functions(&mut out);
        self.render_limit_hits(&c, &mut out);
        self.render_events(&mut out);
        render_maintenance(&mut out, &c.maintenance);
        render_sources(&mut out, &c.sources);
        out
    }

    /// How long the server has run, and the HTTP requests it answered.
    fn render_requests(&self, c: &Counters, out: &mut String) {
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
    }

    /// Connections open now on each door.
    fn render_connections(&self, out: &mut String) {
        write_samples(
            out,
            [
                (
                    "basin_http_connections",
                    "gauge",
                    "HTTP connections open now (at most `[server] max_connections`).",
                    self.connections.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_pg_connections",
                    "gauge",
                    "Postgres connections open now (at most `[server] max_connections`).",
                    self.pg_connections.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_reader_queries_waiting",
                    "gauge",
                    "Statements waiting for a turn now: their reader already runs `[server] max_queries_per_reader`.",
                    self.queries_waiting.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_writer_runs_waiting",
                    "gauge",
                    "Pipeline runs and deploys waiting for a turn now: their writer already has `[server] max_runs_per_writer` going.",
                    self.runs_waiting.load(Ordering::Relaxed) as f64,
                ),
            ],
        );
    }

    /// The limits functions run under, their handoff pool, and invocations a limit stopped.
    fn render_functions(&self, out: &mut String) {
        let f = &self.functions;
        write_samples(
            out,
            [
                (
                    "basin_function_max_processes",
                    "gauge",
                    "`[functions] max_processes`: processes and threads of one invocation.",
                    f.max_processes as f64,
                ),
                (
                    "basin_function_nice",
                    "gauge",
                    "`[functions] nice`: steps of Linux nice functions run below Basin.",
                    f64::from(f.nice),
                ),
                (
                    "basin_function_max_open_files",
                    "gauge",
                    "`[functions] max_open_files`: open files of one function process.",
                    f.max_open_files as f64,
                ),
                (
                    "basin_function_max_folder_size_bytes",
                    "gauge",
                    "`[functions] max_folder_size`: what one invocation may write into its folder.",
                    f.max_folder_size as f64,
                ),
                (
                    "basin_function_handoff_pool_limit_bytes",
                    "gauge",
                    "`[functions] handoff_pool`: shared memory kept allocated for tables handed to functions.",
                    f.handoff_pool as f64,
                ),
                (
                    "basin_function_handoff_pool_bytes",
                    "gauge",
                    "Shared memory the handoff pool holds now (none while no worker is alive).",
                    f.counters.handoff_pool_bytes.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_function_handoff_pool_hits_total",
                    "counter",
                    "Tables handed to or from a function through an allocated file of the pool.",
                    f.counters.handoff_pool_hits.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_function_handoff_pool_misses_total",
                    "counter",
                    "Tables handed to or from a function through new pages (the pool had no file).",
                    f.counters.handoff_pool_misses.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_function_handoff_by_reference_bytes_total",
                    "counter",
                    "Bytes of tables functions returned that Basin read where they lay in the inputs, not copied.",
                    f.counters
                        .handoff_by_reference_bytes
                        .load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_function_keep_warm_seconds",
                    "gauge",
                    "`[functions] keep_warm`: how long a kept process waits for its function's next invocation (0: `reuse` is off).",
                    if f.reuse {
                        f.keep_warm.as_secs_f64()
                    } else {
                        0.0
                    },
                ),
                (
                    "basin_function_max_uses",
                    "gauge",
                    "`[functions] max_uses`: invocations one kept process serves at most.",
                    f.max_uses as f64,
                ),
                (
                    "basin_function_max_kept",
                    "gauge",
                    "`[functions] max_kept`: kept processes waiting for an invocation, at most.",
                    f.max_kept as f64,
                ),
                (
                    "basin_function_kept_processes",
                    "gauge",
                    "Processes kept for their function's next invocation now.",
                    f.counters.kept_processes.load(Ordering::Relaxed) as f64,
                ),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP basin_function_processes_total Invocations by the process that ran them: kept from an earlier invocation of the same function version, or fresh."
        );
        let _ = writeln!(out, "# TYPE basin_function_processes_total counter");
        for (kind, counter) in [
            ("kept", &f.counters.warm_reused),
            ("fresh", &f.counters.warm_fresh),
        ] {
            let _ = writeln!(
                out,
                "basin_function_processes_total{{kind=\"{kind}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        self.render_function_limit_hits(out);
    }

    /// Invocations a `[functions]` limit stopped, by limit.
    fn render_function_limit_hits(&self, out: &mut String) {
        let stopped = &self.functions.counters;
        let _ = writeln!(
            out,
            "# HELP basin_function_limit_hits_total Invocations stopped by a limit (for isolation: not run; for max_output: whose kept log was cut at max_output_lines or max_output_size)."
        );
        let _ = writeln!(out, "# TYPE basin_function_limit_hits_total counter");
        for (limit, counter) in [
            ("timeout", &stopped.timed_out),
            ("memory", &stopped.over_memory),
            ("max_folder_size", &stopped.over_folder),
            ("max_processes", &stopped.over_processes),
            ("max_reply_size", &stopped.over_reply),
            ("max_output", &stopped.output_cut),
            ("isolation", &stopped.refused),
        ] {
            let _ = writeln!(
                out,
                "basin_function_limit_hits_total{{limit=\"{limit}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
    }

    /// Requests, statements and answers stopped by a `[server]` or `[sql]` limit.
    fn render_limit_hits(&self, c: &Counters, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP basin_limit_hits_total Requests, statements and answers stopped by a `[server]` or `[sql]` limit."
        );
        let _ = writeln!(out, "# TYPE basin_limit_hits_total counter");
        let mut hits = c.limits.clone();
        for (limit, count) in self.sql.counters().refused() {
            *hits.entry(limit).or_default() += count;
        }
        for (limit, count) in &hits {
            let _ = writeln!(out, "basin_limit_hits_total{{limit=\"{limit}\"}} {count}");
        }
    }

    /// The triggered events this process ran (`basin serve` unless `--queue-only`, `basin worker`).
    fn render_events(&self, out: &mut String) {
        let events = self.dispatcher.counters();
        write_samples(
            out,
            [
                (
                    "basin_events_claimed_total",
                    "counter",
                    "Triggered events this process leased from the queue (retries and take-overs count again).",
                    events.claimed.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_events_succeeded_total",
                    "counter",
                    "Triggered events this process settled as succeeded.",
                    events.succeeded.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_events_failed_total",
                    "counter",
                    "Triggered events this process settled as failed (to be retried, or dead).",
                    events.failed.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_event_batches_total",
                    "counter",
                    "Batches of events this process ran, one invocation each.",
                    events.batches.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_calls_at_once_total",
                    "counter",
                    "Synchronous HTTP calls this process ran at once, without the queue (also counted as claimed events and batches).",
                    events.calls_at_once.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_event_batches_running",
                    "gauge",
                    "Batches of events running in this process now.",
                    self.dispatcher.running() as f64,
                ),
                (
                    "basin_event_lease_seconds",
                    "gauge",
                    "`[functions] event_lease`: how long a claimed event stays leased unless renewed.",
                    self.dispatcher
                        .lakehouse()
                        .settings()
                        .event_lease
                        .as_secs_f64(),
                ),
            ],
        );
    }
}

/// SQL queries run, failed, their rows and time.
fn render_queries(c: &Counters, out: &mut String) {
    write_samples(
        out,
        [
            (
                "basin_queries_total",
                "counter",
                "SQL queries run.",
                c.queries as f64,
            ),
            (
                "basin_query_errors_total",
                "counter",
                "SQL queries that failed.",
                c.query_errors as f64,
            ),
            (
                "basin_query_rows_total",
                "counter",
                "Rows returned by SQL queries.",
                c.query_rows as f64,
            ),
            (
                "basin_query_seconds_total",
                "counter",
                "Time spent running SQL queries.",
                c.query_seconds,
            ),
        ],
    );
}

fn render_maintenance(out: &mut String, m: &Maintenance) {
    let _ = writeln!(
        out,
        "# HELP basin_maintenance_runs_total Scheduled maintenance runs by status (`[maintenance] schedule`)."
    );
    let _ = writeln!(out, "# TYPE basin_maintenance_runs_total counter");
    for status in ["succeeded", "failed"] {
        let count = m.runs.get(status).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "basin_maintenance_runs_total{{status=\"{status}\"}} {count}"
        );
    }
    write_samples(
        out,
        [
            (
                "basin_maintenance_files_compacted_total",
                "counter",
                "Small data files rewritten by scheduled compaction.",
                m.files_compacted as f64,
            ),
            (
                "basin_maintenance_snapshots_expired_total",
                "counter",
                "Table snapshots expired by scheduled maintenance.",
                m.snapshots_expired as f64,
            ),
            (
                "basin_maintenance_files_removed_total",
                "counter",
                "Warehouse files removed by scheduled gc.",
                m.files_removed as f64,
            ),
            (
                "basin_maintenance_bytes_removed_total",
                "counter",
                "Bytes of warehouse files removed by scheduled gc.",
                m.bytes_removed as f64,
            ),
            (
                "basin_maintenance_seconds_total",
                "counter",
                "Time spent in scheduled maintenance.",
                m.seconds,
            ),
            (
                "basin_maintenance_last_finished_seconds",
                "gauge",
                "When the last scheduled maintenance run ended (Unix seconds; 0: none yet).",
                m.last_finished,
            ),
        ],
    );
}

fn render_sources(out: &mut String, sources: &BTreeMap<String, SourceStream>) {
    if sources.is_empty() {
        return;
    }
    for (name, kind, help, value) in [
        (
            "basin_source_lag_bytes",
            "gauge",
            "Bytes of a source's log (Postgres WAL, MySQL binary log) its CDC stream has received but not committed to its tables.",
            (|s: &SourceStream| s.lag_bytes.to_string()) as fn(&SourceStream) -> String,
        ),
        (
            "basin_source_lag_seconds",
            "gauge",
            "Seconds from a source commit to its Basin commit (the last batch), or that the oldest waiting change has waited.",
            |s: &SourceStream| format!("{:.3}", s.lag_seconds),
        ),
        (
            "basin_source_changes_total",
            "counter",
            "Row changes a CDC source's stream committed to its tables.",
            |s: &SourceStream| s.changes.to_string(),
        ),
        (
            "basin_source_stops_total",
            "counter",
            "Times a CDC source's stream stopped on an error (a limit such as `max_transaction_changes`, a lost connection) and was restarted after a backoff; the log says why.",
            |s: &SourceStream| s.stops.to_string(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (source, stream) in sources {
            let _ = writeln!(out, "{name}{{source=\"{source}\"}} {}", value(stream));
        }
    }
}

/// Unlabelled samples, each after its HELP and TYPE lines: (name, type, help, value).
pub(super) fn write_samples<const N: usize>(
    out: &mut String,
    samples: [(&str, &str, &str, f64); N],
) {
    for (name, kind, help, value) in samples {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
}
