//! Each token's turns: at most `[server] max_queries_per_reader` statements of one reader
//! run at once, across the doors that run SQL (HTTP and the console, Postgres, `/mcp`), and
//! at most `[server] max_runs_per_writer` pipeline runs and deploys of one writer (HTTP and
//! `/mcp`), and at most `[server] max_uploads_per_writer` of its uploads (one more is turned
//! away at once, as one past the server's `max_uploads` is: an upload trickling in for its
//! whole `request_timeout` would hold every slot of the server's).
//!
//! Connection slots bound what one client address holds (`crate::slots`), not what its
//! connections run: one token could start a query on each of its 64 connections per door,
//! and every other reader's query would get a sixty-fifth of the query threads. A run or a
//! deploy goes on after its client leaves (so that it ends whole), so without a bound one
//! writer that sends them and hangs up could start any number at once. Here one more
//! statement (or run) of a token with all its turns taken waits, first come first served,
//! for one of them to end (its answer sent, failed, or its client gone; a run ended), within
//! the statement's time limit (a run: while its client waits, at most `request_timeout`);
//! past it, it fails with the time limit's error. A wait that ends with its client gone
//! started nothing. Waiting is counted (`basin_limit_hits_total{limit="..."}` with the
//! setting's name) and shown (`basin_reader_queries_waiting`, `basin_writer_runs_waiting`).
//!
//! A token is counted by its id (names may be empty); without tokens (`--no-auth`, loopback
//! only) every caller is the one local user. A run's own models and functions run as the
//! run's work and take no statement turn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basin_core::{Error, ErrorKind, Result};
use basin_sql::Deadline;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What one set of turns bounds: the setting that says how many, and what they are turns of.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    pub setting: &'static str,
    /// What one token runs that many of at once, for errors ("queries").
    pub what: &'static str,
}

/// Statements a reader runs at once.
pub(crate) const QUERIES: Bound = Bound {
    setting: "max_queries_per_reader",
    what: "queries",
};

/// Pipeline runs and deploys a writer has going at once.
pub(crate) const RUNS: Bound = Bound {
    setting: "max_runs_per_writer",
    what: "pipeline runs and deploys",
};

/// Uploads a writer sends at once (none waits: [`Turns::try_take`]).
pub(crate) const UPLOADS: Bound = Bound {
    setting: "max_uploads_per_writer",
    what: "uploads",
};

/// The turns of every token of one server, for one [`Bound`].
#[derive(Clone)]
pub(crate) struct Turns {
    inner: Arc<Inner>,
}

struct Inner {
    bound: Bound,
    per_token: usize,
    /// Each reader with a statement running or waiting, and its turns.
    readers: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Statements waiting now (a gauge `/metrics` shows).
    waiting: Arc<AtomicU64>,
    /// Counts a limit hit, by the setting's name.
    hit: Arc<dyn Fn(&'static str) + Send + Sync>,
}

/// One statement's turn, held until its answer ends.
pub(crate) struct Turn {
    inner: Arc<Inner>,
    reader: String,
    permit: Option<OwnedSemaphorePermit>,
}

impl Turns {
    pub(crate) fn new(
        bound: Bound,
        per_token: usize,
        hit: Arc<dyn Fn(&'static str) + Send + Sync>,
        waiting: Arc<AtomicU64>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                bound,
                per_token: per_token.max(1),
                readers: Mutex::default(),
                waiting,
                hit,
            }),
        }
    }

    /// A turn for a statement of the reader acting in this task (`basin_catalog::actor`),
    /// waiting at most until the statement's `deadline` when all its turns are taken.
    pub(crate) async fn take(&self, deadline: Option<Deadline>) -> Result<Arc<Turn>> {
        let (reader, turns) = self.of_actor();
        let permit = match turns.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => self.wait(turns, &reader, deadline).await?,
        };
        Ok(Arc::new(Turn {
            inner: self.inner.clone(),
            reader,
            permit: Some(permit),
        }))
    }

    /// A turn of the token acting in this task, if one is free now (a refusal is counted).
    pub(crate) fn try_take(&self) -> Option<Arc<Turn>> {
        let (reader, turns) = self.of_actor();
        let Ok(permit) = turns.try_acquire_owned() else {
            (self.inner.hit)(self.inner.bound.setting);
            return None;
        };
        Some(Arc::new(Turn {
            inner: self.inner.clone(),
            reader,
            permit: Some(permit),
        }))
    }

    /// The token acting in this task (`basin_catalog::actor`), and its turns.
    fn of_actor(&self) -> (String, Arc<Semaphore>) {
        let reader = basin_catalog::actor::current()
            .and_then(|actor| actor.token_id)
            .unwrap_or_default();
        let mut readers = self.inner.readers.lock().expect("turns");
        let turns = readers
            .entry(reader.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.inner.per_token)))
            .clone();
        (reader, turns)
    }

    /// [`Turns::take`] for a statement starting now with time limit `limit`.
    pub(crate) async fn take_within(&self, limit: Option<Duration>) -> Result<Arc<Turn>> {
        let deadline = limit.map(|limit| (tokio::time::Instant::now() + limit, limit));
        self.take(deadline).await
    }

    async fn wait(
        &self,
        turns: Arc<Semaphore>,
        reader: &str,
        deadline: Option<Deadline>,
    ) -> Result<OwnedSemaphorePermit> {
        let bound = self.inner.bound;
        (self.inner.hit)(bound.setting);
        tracing::debug!(
            reader,
            what = bound.what,
            "waits for one of its token's turns"
        );
        let _waiting = Waiting::start(&self.inner.waiting);
        let acquired = turns.acquire_owned();
        let acquired = match deadline {
            Some((at, limit)) => tokio::time::timeout_at(at, acquired)
                .await
                .map_err(|_| self.waited_too_long(limit))?,
            None => acquired.await,
        };
        // The semaphore is never closed.
        acquired.map_err(|_| Error::internal("a reader's turns were closed"))
    }

    fn waited_too_long(&self, limit: Duration) -> Error {
        let (n, Bound { setting, what }) = (self.inner.per_token, self.inner.bound);
        Error::new(
            ErrorKind::Timeout,
            format!(
                "waited its whole time limit of {} s for a turn: this token already runs {n} \
                 {what} at once (`[server] {setting}` = {n})",
                limit.as_secs_f64()
            ),
        )
        .with_hint(format!(
            "wait for the token's running {what} to end (or cancel them) and send it again; \
             the server's operator may raise `[server] {setting}`"
        ))
    }
}

/// A statement counted in the waiting gauge while it lives: uncounted however its wait ends
/// (its turn came, its time ran out, or its client left and the wait was dropped).
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn start(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Turn {
    /// Gives the turn back, and forgets the reader once nothing of it runs or waits (a
    /// waiting statement holds its reader's turns too).
    fn drop(&mut self) {
        let mut readers = self.inner.readers.lock().expect("turns");
        drop(self.permit.take());
        if readers
            .get(&self.reader)
            .is_some_and(|turns| Arc::strong_count(turns) == 1)
        {
            readers.remove(&self.reader);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basin_catalog::actor::{self, Actor};

    /// Turns, the limit hits they count, and the gauge of statements waiting.
    fn turns(bound: Bound, per_token: usize) -> (Turns, Arc<AtomicU64>, Arc<AtomicU64>) {
        let (hits, waiting) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counted = hits.clone();
        let hit = Arc::new(move |limit: &'static str| {
            assert_eq!(limit, bound.setting);
            counted.fetch_add(1, Ordering::Relaxed);
        });
        (
            Turns::new(bound, per_token, hit, waiting.clone()),
            hits,
            waiting,
        )
    }

    async fn take_as(turns: &Turns, token: &str, limit: Option<Duration>) -> Result<Arc<Turn>> {
        let actor = Actor {
            token_id: Some(token.to_string()),
            ..Actor::new("", "api")
        };
        actor::scope(actor, turns.take_within(limit)).await
    }

    #[tokio::test]
    async fn a_reader_past_its_turns_waits_for_one_of_its_own_and_others_do_not() {
        let (turns, hits, waiting_now) = turns(QUERIES, 2);
        let a1 = take_as(&turns, "ana", None).await.unwrap();
        let _a2 = take_as(&turns, "ana", None).await.unwrap();
        // Another reader is not held up by ana's turns.
        let _b = take_as(&turns, "ben", None).await.unwrap();
        let waiting = tokio::spawn({
            let turns = turns.clone();
            async move { take_as(&turns, "ana", None).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "a third statement of ana waits");
        assert_eq!(waiting_now.load(Ordering::Relaxed), 1);
        drop(a1);
        let a3 = waiting.await.unwrap().unwrap();
        assert_eq!(waiting_now.load(Ordering::Relaxed), 0);
        drop(a3);
        assert_eq!(hits.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_wait_longer_than_the_statements_time_limit_fails_with_a_hint() {
        for (bound, what) in [
            (QUERIES, "2 queries"),
            (RUNS, "2 pipeline runs and deploys"),
        ] {
            let (turns, hits, waiting_now) = turns(bound, 2);
            let _held = take_as(&turns, "ana", None).await.unwrap();
            let _held_too = take_as(&turns, "ana", None).await.unwrap();
            let e = take_as(&turns, "ana", Some(Duration::from_millis(100)))
                .await
                .err()
                .expect("no turn came");
            assert_eq!(e.kind(), ErrorKind::Timeout);
            let setting = format!("`[server] {}` = 2", bound.setting);
            assert!(
                e.message.contains(what) && e.message.contains(&setting),
                "{e}"
            );
            assert!(e.hint.unwrap().contains(bound.setting));
            assert_eq!(waiting_now.load(Ordering::Relaxed), 0);
            assert_eq!(hits.load(Ordering::Relaxed), 1);
        }
    }

    #[tokio::test]
    async fn a_reader_with_nothing_running_is_forgotten() {
        let (turns, _, _) = turns(QUERIES, 1);
        let turn = take_as(&turns, "ana", None).await.unwrap();
        assert_eq!(turns.inner.readers.lock().unwrap().len(), 1);
        drop(turn);
        assert!(turns.inner.readers.lock().unwrap().is_empty());
    }
}
