//! A query's time limit, kept whether or not anyone reads its rows.
//!
//! A query's stream holds its memory (sort buffers, hash tables) until it is dropped. A
//! timer checked only when the next batch is asked for never fires for a client that stops
//! asking: a Postgres portal paused after one row, an HTTP client that stopped reading. So
//! the stream lives in a slot a timer task empties at the deadline: the query stops and its
//! memory goes back to the pool then, and whoever reads next gets the timeout error.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use basin_core::{Error, ErrorKind, Result};
use futures::{Future, Stream, StreamExt};

use crate::limits::LimitCounters;
use crate::results::RecordBatchStream;

/// When a statement's time limit runs out, and that limit (for its error).
pub type Deadline = (tokio::time::Instant, Duration);

/// `work`, stopped at `deadline` with the timeout error (counted in `counters`).
pub(crate) async fn within<T>(
    deadline: Option<Deadline>,
    counters: &LimitCounters,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    // The work is a statement's planning or start, a large future (DataFusion's planner,
    // unoptimized in debug builds): on the heap, each caller's frame holds a pointer to it.
    let work = Box::pin(work);
    match deadline {
        Some((at, limit)) if tokio::time::Instant::now() >= at => Err(timed_out(counters, limit)),
        Some((at, limit)) => tokio::time::timeout_at(at, work)
            .await
            .unwrap_or_else(|_| Err(timed_out(counters, limit))),
        None => work.await,
    }
}

/// The error for a query stopped at its time limit (and counts it).
fn timed_out(counters: &LimitCounters, limit: Duration) -> Error {
    counters.timed_out.fetch_add(1, Ordering::Relaxed);
    Error::new(
        ErrorKind::Timeout,
        format!(
            "the query ran longer than its time limit of {}",
            seconds(limit)
        ),
    )
    .with_hint(
        "narrow it (a filter, a LIMIT, fewer columns), or raise `[sql] query_timeout` in \
         basin.toml (Postgres clients: SET statement_timeout)",
    )
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.3}s")
    }
}

/// Ends `batches` with a timeout error at `deadline`, dropping the query then (counted in
/// `counters`).
pub(crate) fn until(
    batches: RecordBatchStream,
    deadline: tokio::time::Instant,
    limit: Duration,
    counters: Arc<LimitCounters>,
) -> RecordBatchStream {
    let slot = Arc::new(Mutex::new(Slot::Running(batches)));
    let expiry = Expiry {
        slot: Arc::downgrade(&slot),
        counters,
        limit,
    };
    let timer = {
        let expiry = expiry.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            // Busy: a reader is polling now, and its own timer (due now) stops the query.
            expiry.expire(false);
        })
    };
    Until {
        slot,
        // A reader waiting for the next batch is woken by its own timer: the stream it
        // waits on may be gone.
        sleep: Box::pin(tokio::time::sleep_until(deadline)),
        deadline,
        expiry,
        timer,
    }
    .boxed()
}

enum Slot {
    Running(RecordBatchStream),
    /// The time limit stopped the query; the error waits for the next read.
    TimedOut(Error),
    Done,
}

/// Stops the query at its deadline, from the timer task or the reader, whichever is first.
#[derive(Clone)]
struct Expiry {
    slot: std::sync::Weak<Mutex<Slot>>,
    counters: Arc<LimitCounters>,
    limit: Duration,
}

impl Expiry {
    /// `wait`: for the slot's lock; else give up if it is held.
    fn expire(&self, wait: bool) {
        let Some(slot) = self.slot.upgrade() else {
            return;
        };
        let mut slot = match slot.try_lock() {
            Ok(slot) => slot,
            Err(std::sync::TryLockError::WouldBlock) if !wait => return,
            Err(_) => slot.lock().expect("query slot"),
        };
        if matches!(*slot, Slot::Running(_)) {
            let error = timed_out(&self.counters, self.limit); // counted once, here
            let running = std::mem::replace(&mut *slot, Slot::TimedOut(error));
            drop(slot);
            drop(running); // the query stops: its operators and their memory go
        }
    }
}

struct Until {
    slot: Arc<Mutex<Slot>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    deadline: tokio::time::Instant,
    expiry: Expiry,
    timer: tokio::task::JoinHandle<()>,
}

impl Stream for Until {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // The clock as well as the timer: a timer whose deadline passed before it was first
        // polled fires only at the timer driver's next tick.
        if self.sleep.as_mut().poll(cx).is_ready() || tokio::time::Instant::now() >= self.deadline {
            self.expiry.expire(true);
        }
        let this = self.get_mut();
        let mut slot = this.slot.lock().expect("query slot");
        match &mut *slot {
            Slot::Running(batches) => {
                let next = batches.poll_next_unpin(cx);
                if let Poll::Ready(None) = next {
                    *slot = Slot::Done;
                    this.timer.abort();
                }
                next
            }
            Slot::TimedOut(_) => match std::mem::replace(&mut *slot, Slot::Done) {
                Slot::TimedOut(e) => Poll::Ready(Some(Err(e))),
                _ => unreachable!("matched above"),
            },
            Slot::Done => Poll::Ready(None),
        }
    }
}

impl Drop for Until {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

/// Milliseconds since `started`, for the debug lines that say where a statement's time went
/// (`RUST_LOG=basin_sql=debug`).
pub(crate) fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A query's stream that nobody reads: it says when it is dropped.
    struct Unread(Arc<AtomicBool>);

    impl Stream for Unread {
        type Item = Result<RecordBatch>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Pending
        }
    }

    impl Drop for Unread {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn an_unread_query_is_dropped_at_its_deadline_and_the_next_read_says_why() {
        let counters = Arc::new(LimitCounters::default());
        let dropped = Arc::new(AtomicBool::new(false));
        let limit = Duration::from_millis(50);
        let mut batches = until(
            Unread(dropped.clone()).boxed(),
            tokio::time::Instant::now() + limit,
            limit,
            counters.clone(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            dropped.load(Ordering::SeqCst),
            "the query outlived its deadline unread"
        );
        assert_eq!(counters.timed_out.load(Ordering::Relaxed), 1);
        let error = batches.next().await.expect("an item").unwrap_err();
        assert!(error.message.contains("time limit"), "{}", error.message);
        assert!(batches.next().await.is_none());
        assert_eq!(counters.timed_out.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_query_that_ends_in_time_is_not_counted() {
        let counters = Arc::new(LimitCounters::default());
        let limit = Duration::from_millis(50);
        let batches = futures::stream::iter(Vec::<Result<RecordBatch>>::new()).boxed();
        let mut batches = until(
            batches,
            tokio::time::Instant::now() + limit,
            limit,
            counters.clone(),
        );
        assert!(batches.next().await.is_none());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(counters.timed_out.load(Ordering::Relaxed), 0);
    }
}
