//! How the runtime behaves (`[functions]` in basin.toml), the limits one invocation runs
//! under, and the counts of invocations stopped at a limit (for /metrics).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::walls::Isolation;

/// Tables up to this size are copied out of a function's output (`copy_outputs_below`): 16
/// MiB copy in about 3 ms, less than a large function's exit.
pub const COPY_OUTPUTS_BELOW: u64 = 16 << 20;

/// Functions' nice value: a busy function gets about a tenth of a core's time against one of
/// Basin's threads wanting it (the kernel weighs nice 10 at 110 against 1024).
pub const DEFAULT_NICE: u8 = 10;

/// How the runtime behaves; see docs/functions.md.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// An idle environment's worker exits after this long.
    pub keep_alive: Duration,
    /// Invocations running at once, over all functions.
    pub max_concurrency: usize,
    /// Where invocation folders go; `/dev/shm` when it exists.
    pub scratch: Option<PathBuf>,
    /// Lines of output an invocation's log keeps in memory (`[functions] max_output_lines`);
    /// later lines still stream to the terminal, but are counted instead of kept.
    pub max_output_lines: usize,
    /// Bytes of output an invocation's log keeps (`[functions] max_output_size`).
    pub max_output_size: usize,
    /// The longest reply line Basin reads from a function (`[functions] max_reply_size`): a
    /// JSON result, a batch's results (tables travel as files).
    pub max_reply_size: u64,
    /// `[functions] isolation`; None: strict when this machine can build every wall.
    pub isolation: Option<Isolation>,
    /// `[functions] disable_walls`: walls not built (for tests, and hosts where one breaks).
    pub disable_walls: Vec<String>,
    /// Processes and threads of one invocation (`[functions] max_processes`).
    pub max_processes: u64,
    /// How many steps of Linux nice every function runs below Basin and its workers (0-19;
    /// `[functions] nice`): on a busy machine Basin's own threads (queries, the doors) come
    /// first. Functions cannot raise their priority again (`RLIMIT_NICE` 0).
    pub nice: u8,
    /// Open files of one process (`[functions] max_open_files`).
    pub max_open_files: u64,
    /// What one invocation may write into its folder, which is in memory: one file, and all
    /// of them (`[functions] max_folder_size`).
    pub max_folder_size: u64,
    /// Shared memory kept allocated between invocations for the tables handed to and from
    /// functions (`[functions] handoff_pool`; 0: none). Emptied when no worker is alive.
    pub handoff_pool: u64,
    /// A table a function returns up to this size is copied out of shared memory, so Basin
    /// goes on without waiting for the function's processes to end (their exit frees what
    /// they allocated: tens of milliseconds for a large function); a larger one is mapped,
    /// after they have ended (`[functions] copy_outputs_below`; default
    /// [`COPY_OUTPUTS_BELOW`]).
    pub copy_outputs_below: u64,
    /// Keep a function's confined process after an invocation for the next invocation of
    /// the same function version, environment, limits and secrets (`[functions] reuse`; a
    /// function opts out with `@basin.python(reuse=False)`). Its module globals persist
    /// between the two; nothing of another function's does (docs/functions.md).
    pub reuse: bool,
    /// A kept process idle this long ends (`[functions] keep_warm_seconds`).
    pub keep_warm: Duration,
    /// A kept process ends after this many invocations (`[functions] max_uses`).
    pub max_uses: u64,
    /// Kept processes waiting for an invocation, at most (`[functions] max_kept`; the one
    /// idle longest ends first): each holds its memory while it waits.
    pub max_kept: usize,
    /// Shared by every clone of these options, so /metrics can read them.
    pub counters: Arc<RuntimeCounters>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(60),
            max_concurrency: default_concurrency(),
            scratch: None,
            max_output_lines: 10_000,
            max_output_size: 1 << 20,
            max_reply_size: 64 << 20,
            isolation: None,
            disable_walls: Vec::new(),
            max_processes: 512,
            nice: DEFAULT_NICE,
            max_open_files: 4096,
            max_folder_size: 4 << 30,
            handoff_pool: 1 << 30,
            copy_outputs_below: COPY_OUTPUTS_BELOW,
            reuse: true,
            keep_warm: Duration::from_secs(60),
            max_uses: 1000,
            max_kept: default_concurrency(),
            counters: Arc::default(),
        }
    }
}

/// Invocations at once by default, and kept processes: four per core.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 4)
}

/// Invocations stopped or refused, by cause.
#[derive(Debug, Default)]
pub struct RuntimeCounters {
    pub timed_out: AtomicU64,
    pub over_memory: AtomicU64,
    pub over_folder: AtomicU64,
    pub over_processes: AtomicU64,
    /// Failed: its reply was past `max_reply_size`.
    pub over_reply: AtomicU64,
    /// Not stopped: its kept log was cut at `max_output_lines` or `max_output_size`.
    pub output_cut: AtomicU64,
    /// Not run: isolation is strict and a wall is missing.
    pub refused: AtomicU64,
    /// Invocations served by a kept process, and by a fresh one.
    pub warm_reused: AtomicU64,
    pub warm_fresh: AtomicU64,
    /// Processes kept for their function's next invocation now (a gauge).
    pub kept_processes: AtomicU64,
    /// Bytes the handoff pool holds now (a gauge).
    pub handoff_pool_bytes: AtomicU64,
    /// Tables written into a file from the pool, and without one.
    pub handoff_pool_hits: AtomicU64,
    pub handoff_pool_misses: AtomicU64,
    /// Bytes of returned tables read where they lay in the inputs instead of copied
    /// (`references.rs`).
    pub handoff_by_reference_bytes: AtomicU64,
}

impl RuntimeCounters {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The limits an invocation runs under.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// The whole invocation's time limit.
    pub timeout: Option<Duration>,
    /// In a batch, each handler call's time limit (the worker stops the call).
    pub per_event: Option<Duration>,
    pub memory_bytes: Option<u64>,
    pub internet: bool,
    /// A fresh process for every invocation, never a kept one (`@basin.python(reuse=False)`).
    pub fresh: bool,
}

/// Defaults when a function declares nothing: Lambda's maximum timeout, 2 GiB.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_MEMORY: u64 = 2 << 30;
