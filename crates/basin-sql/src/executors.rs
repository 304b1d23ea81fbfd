//! The threads that run plans: a tokio runtime of their own, apart from the one that
//! answers requests.
//!
//! A plan's operators are futures polled on whatever runtime polls its stream, and the
//! tasks they spawn (a partition's input, a repartition's senders) go to that runtime too.
//! On the request runtime, a hostile statement's thousands of union inputs, or a filter
//! over a 100,000-value IN list that computes without yielding, fill its workers' queues:
//! on 2 cores `/healthz` waited 100 to 280 ms behind them (tests/python/test_statements.py).
//! Here the plan's stream is made and polled on these threads, and its batches cross to the
//! caller through a small channel, so the request runtime only moves batches and bytes.
//! DataFusion's guidance is the same: CPU-bound work on a runtime of its own. There are
//! `[sql] query_threads` of them (one per core by default), and like the planning threads
//! they work `[sql] query_nice` steps of nice below the request runtime (4 by default), so
//! that on 2 busy cores the requests still come first.
//!
//! The runtime starts at the first query (a CLI command that runs none never pays for it).
//! A reader that goes away drops the channel; the task polling the plan sees that between
//! two polls of it (not only at its next batch, which an aggregate may hold for minutes),
//! stops and drops the stream, which cancels what it spawned.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use basin_core::{Error, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

/// Batches waiting between the plan and its reader: enough to keep both sides busy, few
/// enough that a slow reader holds up the plan (and its memory) rather than queueing.
const IN_FLIGHT: usize = 2;

#[derive(Clone)]
pub(crate) struct Executors {
    inner: Arc<Inner>,
}

struct Inner {
    threads: usize,
    nice: i32,
    runtime: OnceLock<std::result::Result<tokio::runtime::Runtime, String>>,
    /// Plans running now, and plans stopped because their reader went away (for metrics).
    running: AtomicU64,
    abandoned: AtomicU64,
}

/// Counts a plan as running while it lives.
struct Running(Arc<Inner>);

impl Running {
    fn start(inner: &Arc<Inner>) -> Self {
        inner.running.fetch_add(1, Ordering::Relaxed);
        Self(inner.clone())
    }

    fn abandoned(&self) {
        self.0.abandoned.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Inner {
    /// An engine may be dropped inside an async context (a test, a server shutting down),
    /// where dropping a runtime outright panics.
    fn drop(&mut self) {
        if let Some(Ok(runtime)) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The threads that run plans unless `[sql] query_threads` says: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

impl Executors {
    pub(crate) fn new(threads: usize, nice: i32) -> Self {
        Self {
            inner: Arc::new(Inner {
                threads: threads.max(1),
                nice,
                runtime: OnceLock::new(),
                running: AtomicU64::new(0),
                abandoned: AtomicU64::new(0),
            }),
        }
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        let nice = self.inner.nice;
        let started = self.inner.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(self.inner.threads)
                .thread_name("basin-query")
                // Running a plan recurses once per operator and expression level.
                .thread_stack_size(crate::planners::RUNTIME_STACK)
                .on_thread_start(move || crate::planners::lower_priority(nice))
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        });
        started
            .as_ref()
            .map_err(|e| Error::internal(format!("cannot start the threads that run queries: {e}")))
    }

    /// Plans running on these threads now, and plans stopped so far because their reader
    /// went away before their answer ended.
    pub(crate) fn plans(&self) -> (u64, u64) {
        let inner = &self.inner;
        (
            inner.running.load(Ordering::Relaxed),
            inner.abandoned.load(Ordering::Relaxed),
        )
    }

    /// Starts `plan` on these threads and returns its batches as they come. What fails while
    /// its streams are built fails here; what fails later ends the stream.
    pub(crate) fn execute(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
    ) -> Result<std::result::Result<SendableRecordBatchStream, datafusion::error::DataFusionError>>
    {
        let runtime = self.runtime()?;
        let mut stream = {
            // Whatever building the streams spawns goes to these threads too.
            let _entered = runtime.enter();
            match datafusion::physical_plan::execute_stream(plan.clone(), context) {
                Ok(stream) => stream,
                Err(e) => return Ok(Err(e)),
            }
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(IN_FLIGHT);
        let actor = basin_catalog::actor::current();
        let running = Running::start(&self.inner);
        runtime.spawn(basin_catalog::actor::carried(actor, async move {
            // The reader may go away while the plan works towards its next batch (an
            // aggregate over many rows answers only at the end): it is watched for between
            // two polls of the plan, which yields now and then (DataFusion's cooperative
            // scheduling), not only when a batch is sent. Returning drops the stream, which
            // cancels the plan and what it spawned.
            loop {
                let batch = tokio::select! {
                    biased;
                    () = sender.closed() => return running.abandoned(),
                    batch = stream.next() => batch,
                };
                let Some(batch) = batch else { return };
                if sender.send(batch).await.is_err() {
                    return running.abandoned();
                }
            }
        }));
        let batches = tokio_stream::wrappers::ReceiverStream::new(receiver);
        Ok(Ok(Box::pin(RecordBatchStreamAdapter::new(
            plan.schema(),
            batches,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value.
    fn nice() -> i32 {
        // SAFETY: gettid and getpriority take no pointers.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }

    #[test]
    fn the_query_threads_are_as_many_and_as_far_below_as_the_settings_say() {
        // Threads inherit the nice of the thread that starts them: this one's.
        let base = nice();
        for steps in [0, 7] {
            let executors = Executors::new(3, steps);
            let runtime = executors.runtime().unwrap();
            assert_eq!(runtime.metrics().num_workers(), 3);
            let theirs = runtime.block_on(async { tokio::spawn(async { nice() }).await.unwrap() });
            assert_eq!(theirs, (base + steps).min(19), "query_nice {steps}");
        }
    }
}
