//! `basin worker`: a node that runs the lakehouse's triggered functions and nothing else. It
//! leases due events from the shared queue, runs each batch in its own confined Python
//! worker (building the function's environment on first use) and commits the outputs in the
//! transaction that settles the events, exactly as the dispatcher inside `basin serve` does.
//! No listener, no triggers: the `basin serve` nodes queue the events, and every node
//! claims from the same queue, so adding a worker adds capacity.
//!
//! With nothing to do it holds no Python process. SIGINT or SIGTERM stops claiming, lets the
//! batches it runs finish for up to [`GRACE`], then kills what is left; those events' leases
//! run out and another node runs them.

use std::time::Duration;

use basin_catalog::Result;
use basin_service::Lakehouse;
use basin_service::triggers::dispatch::Dispatcher;

/// How long a stopping worker lets its running batches finish.
pub const GRACE: Duration = Duration::from_secs(30);

/// Runs events until SIGINT or SIGTERM.
pub async fn work(lakehouse: Lakehouse) -> Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let dispatcher = Dispatcher::for_worker(lakehouse.clone());
    dispatcher.clone().run(stopped).await;
    if !dispatcher.finish(GRACE).await {
        tracing::warn!(
            "batches still running after {}s are killed; their events run again when their leases end",
            GRACE.as_secs()
        );
    }
    if let Ok(runtime) = lakehouse.runtime() {
        runtime.kill_all().await;
    }
    tracing::info!("stopped");
    Ok(())
}
