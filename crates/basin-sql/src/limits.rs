//! The settings of SQL in one process (`[sql]` in basin.toml): the memory pool shared by
//! every query and each query's share of it (operators that can spill to disk do), a time
//! limit per query, the bounds on a statement, and where queries run; and the counters of
//! queries those limits stopped. An [`crate::Engine`] is built from them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::guard::StatementLimits;
use crate::planners;

/// Whether scans read strings as `Utf8View` unless `[sql.datafusion]` says otherwise.
pub const STRING_VIEWS: bool = true;

/// The limits of SQL in one process (`[sql]` in basin.toml).
#[derive(Clone, Debug)]
pub struct SqlLimits {
    /// Memory all queries together may hold (`[sql] memory_limit`).
    pub memory_limit: u64,
    /// Memory one query may hold (`[sql] query_memory_limit`); sorts, aggregations and
    /// joins spill to disk past it where they can, others fail with a clear error.
    pub query_memory_limit: u64,
    /// How long one query may run (`[sql] query_timeout`); `None`: no limit.
    pub query_timeout: Option<Duration>,
    /// Where spilled data goes (`[sql] spill_dir`; basin.toml's default: `.basin/spill`; here,
    /// unset: the system's temporary folder).
    pub spill_dir: Option<PathBuf>,
    /// How much spilled data all queries together may keep on disk (`[sql] spill_limit`;
    /// basin.toml's default: a quarter of the free space there, at most 100 GiB).
    pub spill_limit: u64,
    /// DataFusion options every session starts with (`[sql.datafusion]`), checked by
    /// `set_option`.
    pub options: Vec<(String, String)>,
    /// Where queries run (`[sql] engine`).
    pub engine: SqlEngine,
    /// With `engine = "auto"`: the data (bytes of the tables' live files) from which a query
    /// goes to the cluster (`[sql] distributed_threshold`).
    pub distributed_threshold: u64,
    /// The cluster's scheduler and this node's executor (`[sql.ballista]`).
    pub ballista: BallistaSettings,
    /// How many loaded tables (parsed metadata, and the manifests read since) a process
    /// keeps for the next query (`[sql] table_cache`); 0 keeps none.
    pub table_cache: u64,
    /// Bytes of one Iceberg metadata file, manifest list or manifest read (`[sql]
    /// max_metadata_size`; basin-table's `bounded`).
    pub max_metadata_size: u64,
    /// Bytes of answers a process keeps for the next identical query (`[sql]
    /// result_cache`, [`crate::result_cache`]); 0 keeps none.
    pub result_cache: u64,
    /// Bytes of decoded columns a process keeps for the next scan of the same files (`[sql]
    /// column_cache`, [`crate::column_cache`]); 0 keeps none.
    pub column_cache: u64,
    /// Where kept columns are also written for the next process (`.basin/columns` under a
    /// lakehouse; unset: nowhere), and the bytes that folder may hold (`[sql]
    /// column_cache_disk`, [`crate::column_cache`]); 0 keeps none there.
    pub column_dir: Option<PathBuf>,
    pub column_cache_disk: u64,
    /// Bounds on a statement's text, and on its plan's depth (`[sql] max_statement_size`,
    /// `max_nesting`, `max_expression_depth`, `max_joins`).
    pub statement: StatementLimits,
    /// Statements parsed and planned at once (`[sql] planner_threads`).
    pub planner_threads: usize,
    /// The stack of each planning thread (`[sql] planner_stack`).
    pub planner_stack: usize,
    /// Threads that run plans (`[sql] query_threads`).
    pub query_threads: usize,
    /// Steps of Linux nice the planning and query threads work below the rest of the
    /// process (`[sql] query_nice`).
    pub query_nice: i32,
    /// Requests to the warehouse's S3 store SQL has in flight at once in this process
    /// (`[sql] s3_reads`): more wait for a slot. Without a bound, an executor's scans send
    /// hundreds of ranged reads at once, and a slow store answers each past its time limit,
    /// so that every retry adds to the queue instead of the work going on.
    pub s3_reads: usize,
}

impl SqlLimits {
    /// Adds a DataFusion option (`datafusion.optimizer....`), after DataFusion accepts it.
    pub fn set_option(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        let mut options = datafusion::config::ConfigOptions::new();
        options.set(key, value).map_err(|e| e.to_string())?;
        self.options.push((key.to_string(), value.to_string()));
        Ok(())
    }
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            memory_limit: 4 << 30,
            query_memory_limit: 1 << 30,
            query_timeout: Some(Duration::from_secs(300)),
            spill_dir: None,
            spill_limit: 100 << 30,
            options: Vec::new(),
            engine: SqlEngine::default(),
            distributed_threshold: 1 << 30,
            table_cache: basin_table::LOADED_TABLES,
            max_metadata_size: basin_table::MAX_METADATA_SIZE,
            result_cache: crate::result_cache::RESULT_CACHE,
            column_cache: crate::column_cache::COLUMN_CACHE,
            column_dir: None,
            column_cache_disk: crate::column_cache::COLUMN_CACHE_DISK,
            ballista: BallistaSettings::default(),
            statement: StatementLimits::default(),
            planner_threads: planners::default_threads(),
            planner_stack: planners::DEFAULT_STACK,
            query_threads: crate::executors::default_threads(),
            query_nice: planners::QUERY_NICE,
            s3_reads: S3_READS,
        }
    }
}

/// `[sql] s3_reads` unless set.
pub const S3_READS: usize = 32;

/// Counters of queries stopped by a limit, for metrics.
#[derive(Debug, Default)]
pub struct LimitCounters {
    pub timed_out: AtomicU64,
    pub out_of_memory: AtomicU64,
    /// Queries sent to the cluster's executors.
    pub distributed_queries: AtomicU64,
    /// Tasks this process's SQL executor ran.
    pub executor_tasks: AtomicU64,
    /// Requests to the warehouse's S3 store SQL has in flight now (`[sql] s3_reads`).
    pub s3_reads_in_flight: AtomicU64,
    /// Requests to the warehouse's S3 store that waited for a slot, so far.
    pub s3_reads_waited: AtomicU64,
    /// Statements refused by a bound on their text or plan, by the setting's name.
    refused: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl LimitCounters {
    /// Statements refused so far, by the setting that refused them.
    pub fn refused(&self) -> Vec<(&'static str, u64)> {
        let refused = self.refused.lock().expect("limit counters");
        refused.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub(crate) fn refuse(&self, setting: &'static str) {
        *self
            .refused
            .lock()
            .expect("limit counters")
            .entry(setting)
            .or_default() += 1;
    }
}

/// Where queries run (`[sql] engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqlEngine {
    /// Always in the process that received the query.
    Local,
    /// On the cluster's executors, whenever the query can run there.
    Ballista,
    /// On the executors when the query's tables hold at least `[sql] distributed_threshold`.
    #[default]
    Auto,
}

impl FromStr for SqlEngine {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "local" => Ok(Self::Local),
            "ballista" => Ok(Self::Ballista),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "`{other}` is not an engine: `local`, `ballista` or `auto`"
            )),
        }
    }
}

impl fmt::Display for SqlEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::Ballista => "ballista",
            Self::Auto => "auto",
        })
    }
}

/// `[sql.ballista]`: the cluster's scheduler and this node's executor.
#[derive(Clone, Debug)]
pub struct BallistaSettings {
    /// Where every node reaches the scheduler (`HOST:PORT`); `basin serve` runs it there.
    /// `None`: no distributed SQL.
    pub scheduler: Option<String>,
    /// Where a worker's executor serves its stage outputs (`HOST:PORT`, port 0: any).
    pub executor_listen: String,
    /// The host other nodes dial to reach this node's executor (default: the listen host).
    pub executor_advertise: Option<String>,
    /// Tasks an executor runs at once (default: the machine's cores).
    pub executor_slots: usize,
    /// An executor silent this long is lost: the scheduler runs its tasks elsewhere (or
    /// fails their queries) and stops counting it.
    pub executor_timeout: std::time::Duration,
}

impl Default for BallistaSettings {
    fn default() -> Self {
        Self {
            scheduler: None,
            executor_listen: "127.0.0.1:0".into(),
            executor_advertise: None,
            executor_slots: std::thread::available_parallelism().map_or(2, usize::from),
            executor_timeout: std::time::Duration::from_secs(30),
        }
    }
}
