//! `/metrics`' SQL sections: the engine's limits and what hit them, where SQL reads and
//! runs, and what its caches hold.

use std::sync::atomic::Ordering;

use super::Metrics;
use super::render::write_samples;

impl Metrics {
    /// The SQL engine: limits and timeouts hit, memory, planners.
    pub(super) fn render_sql(&self, out: &mut String) {
        let sql = self.sql.counters();
        let limits = self.sql.limits();
        let (running, abandoned) = self.sql.plans();
        write_samples(
            out,
            [
                (
                    "basin_query_timeouts_total",
                    "counter",
                    "SQL queries stopped at `[sql] query_timeout` (or a client's statement_timeout).",
                    sql.timed_out.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_query_memory_exhausted_total",
                    "counter",
                    "SQL queries stopped by `[sql] query_memory_limit` or `memory_limit`.",
                    sql.out_of_memory.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_sql_memory_reserved_bytes",
                    "gauge",
                    "Memory SQL queries hold now.",
                    self.sql.memory_reserved() as f64,
                ),
                (
                    "basin_sql_memory_limit_bytes",
                    "gauge",
                    "`[sql] memory_limit`: memory all queries together may hold.",
                    limits.memory_limit as f64,
                ),
                (
                    "basin_sql_query_memory_limit_bytes",
                    "gauge",
                    "`[sql] query_memory_limit`: memory one query may hold.",
                    limits.query_memory_limit as f64,
                ),
                (
                    "basin_sql_planner_threads",
                    "gauge",
                    "`[sql] planner_threads`: statements parsed and planned at once.",
                    self.sql.planners().0 as f64,
                ),
                (
                    "basin_sql_query_threads",
                    "gauge",
                    "`[sql] query_threads`: threads that run query plans.",
                    limits.query_threads as f64,
                ),
                (
                    "basin_sql_query_nice",
                    "gauge",
                    "`[sql] query_nice`: steps of Linux nice planning and query threads work below the server.",
                    f64::from(limits.query_nice),
                ),
                (
                    "basin_sql_planner_busy",
                    "gauge",
                    "Planning threads parsing or planning a statement now.",
                    self.sql.planners().1 as f64,
                ),
                (
                    "basin_sql_queries_running",
                    "gauge",
                    "Query plans running on the query threads now.",
                    running as f64,
                ),
                (
                    "basin_sql_queries_abandoned_total",
                    "counter",
                    "Query plans stopped because their client left before the answer ended.",
                    abandoned as f64,
                ),
            ],
        );
    }

    /// Where SQL reads and runs: the cluster's executors, the S3 store's slots, loaded tables,
    /// kept answers.
    pub(super) fn render_sql_reads(&self, out: &mut String) {
        let sql = self.sql.counters();
        let limits = self.sql.limits();
        let loaded = self.tables.loaded_tables();
        let answers = self.sql.result_cache();
        write_samples(
            out,
            [
                (
                    "basin_sql_distributed_queries_total",
                    "counter",
                    "SQL queries this node sent to the cluster's executors (`[sql] engine`).",
                    sql.distributed_queries.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_sql_executor_tasks_total",
                    "counter",
                    "Distributed query tasks this node's SQL executor ran.",
                    sql.executor_tasks.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_sql_s3_reads",
                    "gauge",
                    "`[sql] s3_reads`: requests to the warehouse's S3 store SQL may have in flight at once; more wait.",
                    limits.s3_reads as f64,
                ),
                (
                    "basin_sql_s3_reads_in_flight",
                    "gauge",
                    "Requests to the warehouse's S3 store SQL has in flight now.",
                    sql.s3_reads_in_flight.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_sql_s3_reads_waited_total",
                    "counter",
                    "Requests to the warehouse's S3 store that waited for a slot (`[sql] s3_reads`).",
                    sql.s3_reads_waited.load(Ordering::Relaxed) as f64,
                ),
                (
                    "basin_sql_executor_timeout_seconds",
                    "gauge",
                    "`[sql.ballista] executor_timeout`: an executor silent this long is lost, and its tasks run elsewhere.",
                    limits.ballista.executor_timeout.as_secs_f64(),
                ),
                (
                    "basin_sql_distributed_threshold_bytes",
                    "gauge",
                    "`[sql] distributed_threshold`: with `engine = \"auto\"`, the data from which a query goes to the executors.",
                    limits.distributed_threshold as f64,
                ),
                (
                    "basin_sql_table_cache_tables",
                    "gauge",
                    "Loaded tables kept for the next query (at most `[sql] table_cache`).",
                    loaded.tables as f64,
                ),
                (
                    "basin_sql_table_cache_limit_tables",
                    "gauge",
                    "`[sql] table_cache`: how many loaded tables the server keeps.",
                    limits.table_cache as f64,
                ),
                (
                    "basin_sql_table_cache_hits_total",
                    "counter",
                    "Tables a query found loaded already.",
                    loaded.hits as f64,
                ),
                (
                    "basin_sql_table_cache_misses_total",
                    "counter",
                    "Tables a query read from their metadata file.",
                    loaded.misses as f64,
                ),
                (
                    "basin_sql_result_cache_limit_bytes",
                    "gauge",
                    "`[sql] result_cache`: bytes of answers the server keeps for the next identical query.",
                    answers.limit as f64,
                ),
                (
                    "basin_sql_result_cache_bytes",
                    "gauge",
                    "Bytes of answers kept now.",
                    answers.bytes as f64,
                ),
                (
                    "basin_sql_result_cache_answers",
                    "gauge",
                    "Answers kept now.",
                    answers.answers as f64,
                ),
                (
                    "basin_sql_result_cache_hits_total",
                    "counter",
                    "Queries answered from the result cache.",
                    answers.hits as f64,
                ),
                (
                    "basin_sql_result_cache_misses_total",
                    "counter",
                    "Queries that looked in the result cache and ran.",
                    answers.misses as f64,
                ),
                (
                    "basin_sql_result_cache_too_big_total",
                    "counter",
                    "Answers not kept for their size (over an eighth of `[sql] result_cache`).",
                    answers.too_big as f64,
                ),
            ],
        );
    }

    /// What the column cache holds and has done (`[sql] column_cache`).
    pub(super) fn render_sql_columns(&self, out: &mut String) {
        let columns = self.sql.column_cache();
        write_samples(
            out,
            [
                (
                    "basin_sql_column_cache_limit_bytes",
                    "gauge",
                    "`[sql] column_cache`: bytes of decoded columns the server keeps for the next scan of the same files.",
                    columns.limit as f64,
                ),
                (
                    "basin_sql_column_cache_bytes",
                    "gauge",
                    "Bytes of decoded columns kept now.",
                    columns.bytes as f64,
                ),
                (
                    "basin_sql_column_cache_columns",
                    "gauge",
                    "Columns of data files kept decoded now.",
                    columns.columns as f64,
                ),
                (
                    "basin_sql_column_cache_hits_total",
                    "counter",
                    "Scan partitions answered from kept columns.",
                    columns.hits as f64,
                ),
                (
                    "basin_sql_column_cache_misses_total",
                    "counter",
                    "Scan partitions that read their files (their columns then kept for the next).",
                    columns.misses as f64,
                ),
                (
                    "basin_sql_column_cache_fills_total",
                    "counter",
                    "Columns of data files decoded and kept.",
                    columns.fills as f64,
                ),
                (
                    "basin_sql_column_cache_refusals_total",
                    "counter",
                    "Columns not kept: over a quarter of `[sql] column_cache`, not in their file, or of a type that does not convert.",
                    columns.refusals as f64,
                ),
                (
                    "basin_sql_column_cache_disk_limit_bytes",
                    "gauge",
                    "`[sql] column_cache_disk`: bytes of kept columns the lakehouse's `.basin/columns` may hold, for the next process.",
                    columns.disk_limit as f64,
                ),
                (
                    "basin_sql_column_cache_disk_bytes",
                    "gauge",
                    "Bytes in `.basin/columns`, as this process last counted them plus what it wrote since.",
                    columns.disk_bytes as f64,
                ),
                (
                    "basin_sql_column_cache_disk_loads_total",
                    "counter",
                    "Kept columns read back from `.basin/columns` instead of decoded.",
                    columns.disk_loads as f64,
                ),
                (
                    "basin_sql_column_cache_disk_stores_total",
                    "counter",
                    "Kept columns written to `.basin/columns`.",
                    columns.disk_stores as f64,
                ),
            ],
        );
    }
}
