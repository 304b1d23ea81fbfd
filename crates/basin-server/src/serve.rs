//! `basin serve`: binds the HTTP and Postgres doors, starts the background work (maintenance,
//! CDC sources, triggers) and serves until SIGINT or SIGTERM.

use std::net::SocketAddr;

use basin_core::{Error, Result};
use basin_service::Lakehouse;
use basin_service::dispatch::Dispatcher;

use crate::lifecycle::{bind, check_open, shutdown_signal, until_stopped};
use crate::state::AppState;
use crate::{http, postgres, router, sql_cluster, tls};

/// How `basin serve` listens.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Serve without tokens (allowed on loopback addresses only); otherwise every request
    /// but /healthz needs `Authorization: Bearer TOKEN` with a role that allows it.
    pub no_auth: bool,
    /// Also serve the Postgres wire protocol (read-only SQL) here.
    pub pg_listen: Option<SocketAddr>,
    /// Queue triggered events but leave running them to `basin worker` nodes.
    pub queue_only: bool,
}

/// Where `basin serve` ended up listening (port 0 picks a free port).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub http: SocketAddr,
    pub postgres: Option<SocketAddr>,
    /// The SQL scheduler, with `[sql.ballista] scheduler`.
    pub sql_scheduler: Option<SocketAddr>,
    /// Both doors serve TLS (`[server] tls_cert`, `tls_key`): `https://`, `sslmode=require`.
    pub tls: bool,
}

/// Serves until SIGINT or SIGTERM; `ready` is told the bound addresses.
pub async fn serve(
    lakehouse: Lakehouse,
    options: ServeOptions,
    ready: impl FnOnce(Bound),
) -> Result<()> {
    let addresses = std::iter::once(options.listen).chain(options.pg_listen);
    let tls = match &lakehouse.settings().server.tls {
        Some(files) => Some(tls::acceptors(files)?),
        None => None,
    };
    check_open(&lakehouse, addresses, options.no_auth, tls.is_some()).await?;
    let listener = bind(options.listen).await?;
    let pg_listener = match options.pg_listen {
        Some(address) => Some(postgres::bind(address).await?),
        None => None,
    };
    let local = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map_err(|e| Error::io("cannot read the address a listener is bound to").with_source(e))
    };
    let scheduler = sql_cluster::start_scheduler(&lakehouse).await?;
    ready(Bound {
        http: local(&listener)?,
        postgres: pg_listener.as_ref().map(postgres::Door::addr).transpose()?,
        sql_scheduler: scheduler.as_ref().map(|s| s.addr()),
        tls: tls.is_some(),
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let runtime = lakehouse.clone();
    http::clean_uploads(&lakehouse).await;
    let listen = local(&listener)?;
    let dispatcher = Dispatcher::new(lakehouse.clone());
    let state = AppState::new(lakehouse, options.no_auth, Some(listen), dispatcher);
    tokio::spawn(
        state
            .refusals
            .clone()
            .tick(state.lakehouse.clone(), stopped.clone()),
    );
    let metrics = state.metrics.clone();
    tokio::spawn(basin_service::maintenance::run_schedule(
        state.lakehouse.clone(),
        stopped.clone(),
        move |run| metrics.maintenance(run),
    ));
    // Every `mode = "cdc"` source streams while the server runs (a stop lets its batch commit).
    let metrics = state.metrics.clone();
    let sources = tokio::spawn(basin_service::sources::cdc::run_sources(
        state.lakehouse.clone(),
        stopped.clone(),
        std::sync::Arc::new(move |metric| metrics.source(metric)),
    ));
    let _watcher = start_triggers(&state.dispatcher, stopped.clone(), !options.queue_only).await?;
    if let Some(listener) = pg_listener {
        tokio::spawn(postgres::serve(
            listener,
            state.lakehouse.clone(),
            state.metrics.clone(),
            state.shared(),
            options.no_auth,
            tls.as_ref().map(|t| t.postgres.clone()),
            until_stopped(&stopped),
        ));
    }
    let limits = state.limits.clone();
    let metrics = state.metrics.clone();
    http::serve(
        listener,
        router::router(state),
        &limits,
        tls.map(|t| t.http),
        metrics,
        until_stopped(&stopped),
    )
    .await;
    // Each CDC stream commits the batch it holds, then stops.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), sources).await;
    // Requests are done; functions they started are not left behind.
    if let Ok(rt) = runtime.runtime() {
        rt.kill_all().await;
    }
    drop(scheduler);
    tracing::info!("stopped");
    Ok(())
}

/// Starts the scheduler, the bucket watcher and the S3 bucket pollers, and the event
/// dispatcher if `run_events`; queues the files that landed while the server was down. The
/// watcher lives as long as the returned value.
async fn start_triggers(
    dispatcher: &Dispatcher,
    stopped: tokio::sync::watch::Receiver<bool>,
    run_events: bool,
) -> Result<basin_service::triggers::watch::BucketWatcher> {
    use basin_service::triggers::{commits, s3, schedule, watch};
    let lakehouse = dispatcher.lakehouse().clone();
    let watcher = watch::watch(lakehouse.clone(), dispatcher.clone())?;
    let found = watch::scan(&lakehouse, dispatcher).await?;
    if found > 0 {
        tracing::info!(events = found, "queued objects that landed while stopped");
    }
    tokio::spawn(schedule::run(
        lakehouse.clone(),
        dispatcher.clone(),
        stopped.clone(),
    ));
    tokio::spawn(commits::run(
        lakehouse.clone(),
        dispatcher.clone(),
        stopped.clone(),
    ));
    tokio::spawn(s3::poll(lakehouse, dispatcher.clone(), stopped.clone()));
    if run_events {
        tokio::spawn(dispatcher.clone().run(stopped));
    }
    Ok(watcher)
}
