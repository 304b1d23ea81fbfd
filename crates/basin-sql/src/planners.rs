//! The threads that parse and plan statements: a few, with a deliberately large stack.
//!
//! Parsing, planning, optimizing and building a plan's streams walk the statement's tree
//! recursively, in sqlparser, DataFusion and Basin alike. The guard ([`crate::guard`])
//! bounds how deep that tree is; these threads give the walks room for that depth, however
//! large each frame is in the build at hand (an unoptimized sqlparser frame is tens of
//! kilobytes), instead of a runtime worker's 2 MiB. Parsing is synchronous and may take a
//! while on a hostile statement: here it holds one of these threads, never a worker of the
//! async runtime that answers `/healthz` and every other request. Their number is the
//! limit of statements planned at once (`[sql] planner_threads`); more wait their turn,
//! within their time limit.
//!
//! A job is a future run to completion on the thread (`Handle::block_on`): the runtime's
//! own threads still drive its timers and sockets. A caller whose time limit runs out stops
//! waiting; the thread finishes the job (the guard bounds how long that takes) and drops
//! what it made there, on its own large stack.

use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use basin_core::{Error, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

type Job = Box<dyn FnOnce() + Send>;

/// How many threads plan at once unless `[sql] planner_threads` says: twice the cores, at
/// least 4, so that a plan waiting on storage (a table's metadata, manifests) does not hold
/// up the rest.
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    (2 * cores).max(4)
}

/// The stack of each planning thread unless `[sql] planner_stack` says. Only the pages a
/// walk touches are ever backed by memory.
pub const DEFAULT_STACK: usize = 256 << 20;

/// The stack of each thread of the binary's async runtime, where plans run: running a plan
/// recurses once per operator (each stream polls its input) and once per expression level,
/// and the plans `[sql] max_expression_depth` lets through need more than the default 2 MiB
/// (a chain of 200 joins overflowed it). Only the pages a plan touches are ever backed by
/// memory.
pub const RUNTIME_STACK: usize = 16 << 20;

/// How many steps of Linux nice below the rest of Basin the threads that parse, plan and
/// run queries work unless `[sql] query_nice` says: on a busy machine the runtime that
/// answers requests (`/healthz`, a small query's bytes) comes first, and a hostile
/// statement's work waits its turn. On an idle machine it changes nothing. Functions are
/// further down still (`[functions] nice`).
pub const QUERY_NICE: i32 = 4;

/// Lowers the calling thread's CPU priority by `steps` of nice (Linux sets nice per
/// thread). Failing is harmless: the thread keeps its priority.
pub(crate) fn lower_priority(steps: i32) {
    if steps <= 0 {
        return;
    }
    // SAFETY: gettid and setpriority take no pointers; they act on the calling thread only.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, now + steps);
    }
}

/// The planning threads of one engine.
#[derive(Clone)]
pub(crate) struct Planners {
    inner: Arc<Inner>,
}

struct Inner {
    /// One per thread: a job starts only when a thread is free to take it.
    permits: Arc<Semaphore>,
    jobs: Mutex<mpsc::Sender<Job>>,
    threads: usize,
}

impl Planners {
    /// Starts `threads` threads with `stack` bytes of stack each, `nice` steps below.
    pub(crate) fn start(threads: usize, stack: usize, nice: i32) -> Result<Self> {
        let threads = threads.max(1);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("basin-plan-{i}"))
                .stack_size(stack)
                .spawn(move || {
                    lower_priority(nice);
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panic in a job (caught, it fails that statement only) must
                            // not take a thread from the pool.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            // Every sender is gone: the engine was dropped.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| {
                    Error::internal("cannot start a SQL planning thread").with_source(e)
                })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(threads)),
                jobs: Mutex::new(sender),
                threads,
            }),
        })
    }

    pub(crate) fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Jobs running now.
    pub(crate) fn busy(&self) -> usize {
        self.inner.threads - self.inner.permits.available_permits()
    }

    /// Runs `work` on a planning thread once one is free; the caller's own time limit
    /// (around this future) covers the wait too.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let permit: OwnedSemaphorePermit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::internal("the SQL planning threads are gone"))?;
        let handle = tokio::runtime::Handle::current();
        let (sender, receiver) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = handle.block_on(work);
            // The permit goes back before the caller hears back, so that `busy` no longer
            // counts this job when the caller goes on.
            drop(permit);
            // A caller that stopped waiting leaves the result to be dropped here, on this
            // thread's stack.
            let _ = sender.send(result);
        });
        self.inner
            .jobs
            .lock()
            .map_err(|_| Error::internal("the SQL planning queue is poisoned"))?
            .send(job)
            .map_err(|_| Error::internal("the SQL planning threads are gone"))?;
        receiver
            .await
            .map_err(|_| Error::internal("a SQL planning thread failed on this statement"))?
    }
}

/// Plans one statement. DataFusion's planner has panics a statement can reach (53.1:
/// `SELECT TABLE 1` unwraps a missing string); one becomes an internal error instead of
/// taking the session's caller down.
pub(crate) async fn plan_statement(
    state: &datafusion::execution::session_state::SessionState,
    statement: datafusion::sql::parser::Statement,
) -> std::result::Result<datafusion::logical_expr::LogicalPlan, datafusion::error::DataFusionError>
{
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(state.statement_to_plan(statement))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(datafusion::error::DataFusionError::Internal(format!(
                "DataFusion's planner failed on this statement: {why}"
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recursion as deep as `n`, with a frame of about 1 KiB each.
    fn deep(n: usize) -> usize {
        let frame = std::hint::black_box([1u8; 1024]);
        if n == 0 {
            0
        } else {
            deep(n - 1) + usize::from(frame[n % 1024])
        }
    }

    #[tokio::test]
    async fn a_job_recursing_past_a_workers_stack_runs_on_a_planning_thread() {
        let planners = Planners::start(2, 64 << 20, QUERY_NICE).unwrap();
        // 16 MiB of frames: far past the 2 MiB of a runtime's worker.
        let depth = planners.run(async { Ok(deep(16 * 1024)) }).await.unwrap();
        assert_eq!(depth, 16 * 1024);
    }

    #[tokio::test]
    async fn jobs_past_the_threads_wait_and_a_caller_may_stop_waiting() {
        let planners = Planners::start(1, 1 << 20, QUERY_NICE).unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = {
            let planners = planners.clone();
            tokio::spawn(async move {
                planners
                    .run(async move {
                        hold.recv().ok();
                        Ok(1)
                    })
                    .await
            })
        };
        while planners.busy() == 0 {
            tokio::task::yield_now().await;
        }
        // The one thread is busy: a second job waits, and its caller can give up.
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            planners.run(async { Ok(2) }),
        )
        .await;
        assert!(
            waited.is_err(),
            "a second job ran while the thread was busy"
        );
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(planners.run(async { Ok(3) }).await.unwrap(), 3);
        assert_eq!(planners.busy(), 0);
    }
}
