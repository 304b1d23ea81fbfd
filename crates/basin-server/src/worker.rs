//! `basin worker`: a node that runs the lakehouse's triggered functions and nothing else. It
//! leases due events from the shared queue, runs each batch in its own confined Python
//! worker (building the function's environment on first use) and commits the outputs in the
//! transaction that settles the events, exactly as the dispatcher inside `basin serve` does.
//! No triggers: the `basin serve` nodes queue the events, and every node claims from the same
//! queue, so adding a worker adds capacity. With `--listen` it answers `/healthz` and
//! `/metrics` (a reader token, as on `basin serve`), and nothing else.
//!
//! With nothing to do it holds no Python process. SIGINT or SIGTERM stops claiming, lets the
//! batches it runs finish for up to [`GRACE`], then kills what is left; those events' leases
//! run out and another node runs them.

use std::net::SocketAddr;
use std::time::Duration;

use basin_core::Result;
use basin_service::Lakehouse;
use basin_service::dispatch::Dispatcher;

use crate::state::AppState;

/// How long a stopping worker lets its running batches finish.
pub const GRACE: Duration = Duration::from_secs(30);

/// How `basin worker` runs.
#[derive(Clone, Debug, Default)]
pub struct WorkOptions {
    /// Answer `/healthz` and `/metrics` here.
    pub listen: Option<SocketAddr>,
    /// `/metrics` without a token (loopback addresses only).
    pub no_auth: bool,
}

/// Where a worker ended up listening.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerBound {
    /// `/healthz` and `/metrics`, with `--listen`.
    pub http: Option<SocketAddr>,
    /// The SQL executor's data port, with `[sql.ballista] scheduler`.
    pub sql_executor: Option<SocketAddr>,
}

/// Runs events (and, on a cluster with distributed SQL, query stages) until SIGINT or
/// SIGTERM; `ready` is told where it listens.
pub async fn work(
    lakehouse: Lakehouse,
    options: WorkOptions,
    ready: impl FnOnce(WorkerBound),
) -> Result<()> {
    let tls = match &lakehouse.settings().server.tls {
        Some(files) => Some(crate::tls::acceptors(files)?.http),
        None => None,
    };
    let listener = match options.listen {
        Some(address) => {
            crate::lifecycle::check_open(&lakehouse, [address], options.no_auth, tls.is_some())
                .await?;
            Some(crate::lifecycle::bind(address).await?)
        }
        None => None,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::lifecycle::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let dispatcher = Dispatcher::for_worker(lakehouse.clone());
    let executor = crate::sql_cluster::start_executor(&lakehouse).await?;
    let bound = listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(listener) = listener {
        let state = AppState::new(
            lakehouse.clone(),
            options.no_auth,
            bound,
            dispatcher.clone(),
        );
        let limits = state.limits.clone();
        let metrics = state.metrics.clone();
        let app = crate::router::layered(crate::openapi::health_routes(), state);
        let until = crate::lifecycle::until_stopped(&stopped);
        tokio::spawn(async move {
            crate::http::serve(listener, app, &limits, tls, metrics, until).await;
        });
    }
    ready(WorkerBound {
        http: bound,
        sql_executor: executor.as_ref().map(|e| e.addr()),
    });
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
    drop(executor);
    tracing::info!("stopped");
    Ok(())
}
