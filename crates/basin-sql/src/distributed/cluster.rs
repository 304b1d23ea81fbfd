//! How this node reaches the cluster's scheduler, and the errors of a distributed query in
//! words that say which node went away.

use basin_core::{Error, Result};

use super::Scheduler;

/// How this node reaches the cluster's scheduler.
#[derive(Clone, Debug)]
pub(crate) struct Cluster {
    /// `http://HOST:PORT`.
    pub(super) url: String,
    token: String,
    /// The scheduler, when this process runs it: it knows whether executors are there.
    pub(super) local: Option<Scheduler>,
}

impl Cluster {
    /// The scheduler at `scheduler` (`HOST:PORT`), reached with the cluster's `token`.
    pub(crate) fn remote(scheduler: &str, token: &str) -> Self {
        Self {
            url: format!("http://{scheduler}"),
            token: token.to_string(),
            local: None,
        }
    }

    /// `scheduler`, which runs in this process, reached with the cluster's `token`.
    // Without the `cluster` feature no scheduler can be made (an empty enum).
    #[cfg_attr(not(feature = "cluster"), allow(unreachable_code))]
    pub(crate) fn local(scheduler: &Scheduler, token: &str) -> Self {
        Self {
            url: format!("http://{}", scheduler.addr()),
            token: token.to_string(),
            local: Some(scheduler.clone()),
        }
    }

    /// The token this node presents to the scheduler.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }
}

/// Whether this build runs distributed SQL; if not, the error that says so.
pub fn available() -> Result<()> {
    if cfg!(feature = "cluster") {
        Ok(())
    } else {
        Err(left_out())
    }
}

/// What a build without the `cluster` feature says when a cluster is asked of it.
pub(super) fn left_out() -> Error {
    Error::invalid(
        "this basin was built without distributed SQL (the `cluster` feature): it cannot run \
         or join a Ballista cluster",
    )
    .with_hint(
        "build with the default features (`cargo build --bin basin`) or install the wheel \
         (`pip install basin-lakehouse`); or remove [sql.ballista] scheduler from basin.toml",
    )
}

/// What an error says when a connection to another node failed or broke: refused before
/// the query's data moved, or (a Flight stream from an executor killed mid-answer) cut while
/// it did, which gRPC reports as an h2 body read failing on a broken pipe or a reset.
const CONNECTION_LOST: &[&str] = &[
    "transport error",
    "tcp connect",
    "Connection refused",
    "Unavailable",
    "h2 protocol error",
    "BrokenPipe",
    "broken pipe",
    "Connection reset",
];

/// What the scheduler says when a task failed because the executor holding its input went
/// away: its shuffle files can no longer be fetched.
const EXECUTOR_LOST: &[&str] = &[
    "FetchFailed",
    "FetchPartitionError",
    "fetch partition",
    "ExecutorLost",
];

impl Cluster {
    /// `e`, said as the scheduler's when it is about reaching the scheduler.
    pub(crate) fn explain_error(&self, e: Error) -> Error {
        let text = e.to_string();
        let address = self.url.trim_start_matches("http://");
        let says = |words: &[&str]| words.iter().any(|w| text.contains(w));
        let executor_lost = says(EXECUTOR_LOST);
        if text.contains("Unauthenticated") || text.contains("needs its token") {
            Error::invalid(format!(
                "the SQL scheduler at {address} refused this node's token"
            ))
            .with_hint("the nodes of a cluster share one catalog; check this node's catalog is the scheduler's")
        } else if !executor_lost && !says(CONNECTION_LOST) {
            e
        } else if executor_lost || !text.contains(address) {
            // Another node's address: an executor went away while the query ran.
            Error::io(format!(
                "an SQL executor stopped while the query ran (a worker was lost): {text}"
            ))
            .with_hint(
                "run the query again: the scheduler gives its work to the executors still there",
            )
        } else {
            Error::io(format!("the SQL scheduler at {address} did not answer: {text}")).with_hint(
                "start `basin serve` on the node [sql.ballista] scheduler names, or set [sql] engine = \"local\"",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster {
            url: "http://127.0.0.1:50050".into(),
            token: String::new(),
            local: None,
        }
    }

    #[test]
    fn an_executor_killed_mid_answer_is_a_lost_worker_with_a_hint() {
        // What a Flight stream from a SIGKILLed executor reported in CI.
        let cut = Error::invalid(
            "Arrow error: External error: code: 'Unknown error', message: \"h2 protocol error: \
             error reading a body from connection\", source: hyper::Error(Body, Error { kind: \
             Io(Custom { kind: BrokenPipe, error: \"stream closed because of a broken pipe\" }) })",
        );
        let e = cluster().explain_error(cut);
        assert!(e.to_string().contains("a worker was lost"), "{e}");
        assert!(
            e.hint
                .as_deref()
                .is_some_and(|h| h.contains("run the query again")),
            "{e:?}"
        );

        let refused = Error::invalid(
            "GrpcConnectionError(\"Error connecting to Ballista scheduler or executor at \
             http://127.0.0.1:40787: tcp connect error: Connection refused\")",
        );
        assert!(
            cluster()
                .explain_error(refused)
                .to_string()
                .contains("a worker was lost")
        );

        let stage = Error::invalid(
            "Job AbC failed: Job failed due to stage 2 failed: Stage 2 has failed 4 times, most \
             recent failure reason: FetchPartitionError(\"exec-1\", 1, 0, \"gone\")",
        );
        assert!(
            cluster()
                .explain_error(stage)
                .to_string()
                .contains("a worker was lost")
        );
    }

    #[test]
    fn the_scheduler_unreachable_and_other_errors_keep_their_own_words() {
        let down = Error::invalid(
            "transport error connecting to http://127.0.0.1:50050: Connection refused",
        );
        let e = cluster().explain_error(down);
        assert!(e.to_string().contains("did not answer"), "{e}");

        let wrong = Error::invalid("column \"nope\" not found");
        assert_eq!(
            cluster().explain_error(wrong).to_string(),
            "column \"nope\" not found"
        );
    }
}
