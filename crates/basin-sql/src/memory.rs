//! One query's share of the memory every query of a process shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use basin_core::units::format_size;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// One session's share of the shared pool. DataFusion's pools each have one limit; a pool
/// inside a pool (a query's share of the server's memory) is not among them, so Basin keeps
/// this small one.
#[derive(Debug)]
pub(crate) struct QueryPool {
    shared: Arc<GreedyMemoryPool>,
    limit: usize,
    total: usize,
    used: AtomicUsize,
}

impl QueryPool {
    /// A share of `limit` bytes of `shared`, which holds `total`.
    pub(crate) fn new(shared: Arc<GreedyMemoryPool>, limit: usize, total: usize) -> Self {
        Self {
            shared,
            limit,
            total,
            used: AtomicUsize::new(0),
        }
    }
}

impl MemoryPool for QueryPool {
    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.shared.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.shared.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        let grown = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + additional <= self.limit).then_some(used + additional)
            });
        if grown.is_err() {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} needs {} more, past the query's memory limit of {} (`[sql] query_memory_limit`)",
                reservation.consumer().name(),
                format_size(additional as u64),
                format_size(self.limit as u64),
            )));
        }
        if self.shared.try_grow(reservation, additional).is_err() {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} needs {} more, but queries together hold the server's memory limit of {} \
                 (`[sql] memory_limit`)",
                reservation.consumer().name(),
                format_size(additional as u64),
                format_size(self.total as u64),
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}
