//! Handles on the Ballista servers this process runs, the scheduler and an executor: what
//! they say about themselves, and their tasks, which stop when the handle is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::task::JoinHandle;

/// Aborts its task when dropped: no server outlives the node that started it.
#[derive(Debug)]
pub(super) struct Task(pub(super) JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The scheduler embedded in this process.
#[derive(Clone)]
pub struct Scheduler {
    pub(super) addr: SocketAddr,
    /// `[sql.ballista] executor_timeout`.
    pub(super) executor_timeout: Duration,
    pub(super) server: SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
    pub(super) _task: Arc<Task>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Scheduler {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Executors that polled for work lately.
    pub async fn alive_executors(&self) -> usize {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        match self
            .server
            .state
            .executor_manager
            .get_executors_state()
            .await
        {
            Ok(executors) => executors
                .iter()
                .filter(|(_, seen, _)| {
                    seen.is_some_and(|at| now.saturating_sub(at) < self.executor_timeout)
                })
                .count(),
            Err(_) => 0,
        }
    }
}

/// An executor embedded in this process, running stages for the scheduler.
#[derive(Debug)]
pub struct SqlExecutor {
    pub(super) addr: SocketAddr,
    pub(super) tasks: Arc<AtomicU64>,
    pub(super) _tasks: Vec<Task>,
}

impl SqlExecutor {
    /// Where other executors and clients fetch its stages' outputs.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Tasks (one partition of one stage each) it has run.
    pub fn tasks_run(&self) -> u64 {
        self.tasks.load(Ordering::Relaxed)
    }
}
