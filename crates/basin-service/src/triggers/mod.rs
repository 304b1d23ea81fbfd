//! Triggered functions: declared with `@basin.on_object`, `on_commit`, `schedule` or `http`, deployed
//! with `basin deploy`, fed by a durable queue in the catalog store, and dispatched by
//! `basin serve`.

pub mod commits;
pub mod deploy;
mod handle;
pub mod http;
mod objects;
pub mod s3;
pub mod schedule;
pub mod watch;

pub use handle::Triggers;

use std::future::Future;
use std::time::Duration;

/// Runs `tick` until `stop` turns true, waiting between two the time it returns, or 5 s
/// after a failure (logged as `what` failing): the loop of the scheduler and the commit
/// watcher.
async fn repeat<F, T>(what: &str, mut stop: tokio::sync::watch::Receiver<bool>, mut tick: F)
where
    F: FnMut() -> T,
    T: Future<Output = basin_core::Result<Duration>>,
{
    loop {
        if *stop.borrow() {
            return;
        }
        let sleep = match tick().await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("{what} failed, retrying in 5s: {e}");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.changed() => {}
        }
    }
}
pub(crate) use objects::{ObjectMeta, object_events};
