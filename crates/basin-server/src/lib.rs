//! `basin serve`: one server process over one lakehouse. It offers Basin's operations over
//! HTTP (health, Prometheus metrics, refs, SQL queries as JSON or Arrow IPC streams), the
//! Iceberg REST catalog protocol under `/v1`, and read-only SQL over the Postgres wire
//! protocol, all behind the same access tokens; and a web console at `/`.
//!
//! Every request gets an id (the caller's `x-request-id`, or a new one), returned in the
//! response and carried by every log line of the request. SIGINT or SIGTERM stops accepting
//! connections, lets requests in flight finish, then stops running functions.
//!
//! Callers are not trusted: each route declares its role ([`auth`]), SQL follows one
//! read-only policy at every door (`basin_sql::policy`), and every resource a caller can
//! make the server spend has a limit in basin.toml's `[server]` and `[sql]` sections, with a
//! metric (see docs/serving.md, "Security").

mod api;
mod auth;
mod console;
mod http;
mod iceberg_rest;
mod metrics;
pub mod openapi;
mod postgres;
mod query;
mod slots;
mod sql_cluster;
mod tls;
mod triggers;
mod worker;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::MethodRouter;
use basin_core::{Error, Result};
use basin_service::dispatch::Dispatcher;
use basin_service::{Lakehouse, ServerSettings};
use tracing::Instrument;

pub use api::ARROW_STREAM;
pub use metrics::Metrics;
pub use worker::{WorkOptions, WorkerBound, work};

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

#[derive(Clone)]
pub(crate) struct AppState {
    pub lakehouse: Lakehouse,
    pub metrics: Arc<Metrics>,
    /// Requests need no token (loopback only).
    pub open: bool,
    /// Runs triggered functions (started by `serve`); HTTP calls queue events for it.
    pub dispatcher: Dispatcher,
    /// The names requests may give in `Host`.
    pub hosts: auth::Hosts,
    /// `[server]` in basin.toml: limits on what callers may make the server do.
    pub limits: ServerSettings,
    /// Uploads received at once (`[server] max_uploads`).
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// When runs whose process died were last settled (`settle_runs`).
    pub runs_settled: Arc<tokio::sync::Mutex<Option<std::time::Instant>>>,
}

/// The HTTP application (routes and middleware), for `serve` and for tests. With `open`,
/// requests need no token; `listen` is the address `Host` headers must name.
pub fn app(lakehouse: Lakehouse, open: bool, listen: Option<SocketAddr>) -> Router {
    let dispatcher = Dispatcher::new(lakehouse.clone());
    router(AppState::new(lakehouse, open, listen, dispatcher))
}

impl AppState {
    fn new(
        lakehouse: Lakehouse,
        open: bool,
        listen: Option<SocketAddr>,
        dispatcher: Dispatcher,
    ) -> Self {
        let limits = lakehouse.settings().server.clone();
        Self {
            hosts: auth::Hosts::new(listen, limits.allowed_hosts.clone()),
            metrics: Arc::new(Metrics::new(
                lakehouse.sql().clone(),
                lakehouse.tables().clone(),
                lakehouse.settings().runtime.clone(),
                dispatcher.clone(),
            )),
            dispatcher,
            lakehouse,
            open,
            uploads: Arc::new(tokio::sync::Semaphore::new(limits.max_uploads)),
            limits,
            runs_settled: Arc::default(),
        }
    }

    /// Settles the runs whose process died before a caller reads runs, as `basin runs` does
    /// locally; at most once per `SETTLE_EVERY`, since it reads every run record, and one
    /// caller at a time. A failure is logged: the records are listed as they are.
    pub(crate) async fn settle_runs(&self) {
        const SETTLE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
        let mut last = self.runs_settled.lock().await;
        if last.is_some_and(|at| at.elapsed() < SETTLE_EVERY) {
            return;
        }
        if let Err(e) = self.lakehouse.settle_abandoned_runs().await {
            tracing::warn!("cannot settle runs whose process died: {e}");
        }
        *last = Some(std::time::Instant::now());
    }
}

fn router(state: AppState) -> Router {
    let routes = openapi::routes()
        .merge(iceberg_rest::routes())
        .merge(console::routes())
        .fallback(triggers::call_declared);
    layered(routes, state)
}

/// `routes` behind the middleware every request passes: time limit, tokens, browser
/// safety, JSON errors, request context.
fn layered(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .layer(middleware::from_fn_with_state(
            state.clone(),
            http::request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            http::reserved_only,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::browser_safety,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            http::json_errors,
        ))
        // What JSON extractors read whole; function calls read their body with the same limit.
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_size,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

/// A router of `(path, method router)` pairs; pairs with one path are merged.
fn route_table(
    routes: impl IntoIterator<Item = (&'static str, MethodRouter<AppState>)>,
) -> Router<AppState> {
    let mut by_path: std::collections::BTreeMap<&str, MethodRouter<AppState>> =
        std::collections::BTreeMap::new();
    for (path, handler) in routes {
        let merged = match by_path.remove(path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
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
    let local = |l: &tokio::net::TcpListener| l.local_addr().map_err(|e| Error::io(format!("{e}")));
    let scheduler = sql_cluster::start_scheduler(&lakehouse).await?;
    ready(Bound {
        http: local(&listener)?,
        postgres: pg_listener.as_ref().map(local).transpose()?,
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
    let metrics = state.metrics.clone();
    tokio::spawn(basin_service::maintenance::run_schedule(
        state.lakehouse.clone(),
        stopped.clone(),
        move |run| metrics.maintenance(run),
    ));
    // Every `mode = "cdc"` source streams while the server runs (a stop lets its batch commit).
    let metrics = state.metrics.clone();
    let sources = tokio::spawn(basin_service::cdc::run_sources(
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
            options.no_auth,
            tls.as_ref().map(|t| t.postgres.clone()),
            until_stopped(&stopped),
        ));
    }
    let limits = state.limits.clone();
    let metrics = state.metrics.clone();
    http::serve(
        listener,
        router(state),
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

/// Refuses `--no-auth` on an address other machines can reach, warns when tokens would
/// cross the network in the clear (no TLS beyond loopback), and when no token exists (every
/// request would be refused).
async fn check_open(
    lakehouse: &Lakehouse,
    addresses: impl IntoIterator<Item = SocketAddr>,
    no_auth: bool,
    tls: bool,
) -> Result<()> {
    for address in addresses {
        if !tls && !no_auth && !address.ip().is_loopback() {
            tracing::warn!(
                "{address} is reachable from other machines without TLS: tokens and answers cross the network in the clear; set `[server] tls_cert` and `tls_key`, or serve behind a TLS proxy"
            );
        }
        if no_auth && !address.ip().is_loopback() {
            return Err(Error::invalid(format!(
                "--no-auth on {address} would let anyone on the network read and change the lakehouse"
            ))
            .with_hint("drop --no-auth and give clients tokens (basin token create --role reader), or listen on 127.0.0.1"));
        }
    }
    if !no_auth && lakehouse.list_tokens().await?.is_empty() {
        tracing::warn!(
            "no access tokens exist, so every request will get 401: create one with `basin token create --role reader`"
        );
    }
    Ok(())
}

async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.map_err(|e| {
        Error::io(format!("cannot listen on {address}: {e}"))
            .with_hint("pick another port with --listen")
    })
}

/// Starts the scheduler, the bucket watcher and the S3 bucket pollers, and the event
/// dispatcher if `run_events`; queues the files that landed while the server was down. The
/// watcher lives as long as the returned value.
async fn start_triggers(
    dispatcher: &Dispatcher,
    stopped: tokio::sync::watch::Receiver<bool>,
    run_events: bool,
) -> Result<basin_service::triggers::watch::BucketWatcher> {
    use basin_service::triggers::{s3, schedule, watch};
    let lakehouse = dispatcher.lakehouse().clone();
    let watcher = watch::watch(lakehouse.clone(), dispatcher.clone())?;
    let found = watch::scan(&lakehouse).await?;
    if found > 0 {
        tracing::info!(events = found, "queued objects that landed while stopped");
    }
    tokio::spawn(schedule::run(
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

/// Resolves once `stopped` turns true.
fn until_stopped(
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + use<> {
    let mut stopped = stopped.clone();
    async move {
        let _ = stopped.wait_for(|s| *s).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing requests in flight, then stopping"),
        _ = int.recv() => tracing::info!("SIGINT: finishing requests in flight, then stopping"),
    }
}

/// Gives each request an id (in the response and in every log line of the request) and
/// counts it for /metrics.
async fn request_context(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| basin_core::ids::ordered());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    span.in_scope(|| tracing::info!(status, ms = seconds * 1000.0, "done"));
    // Labels from fixed lists only: any caller, before its token is checked, could
    // otherwise make a new series per request (a method of any name, any path).
    let method_label = match method {
        Method::GET | Method::POST | Method::PUT | Method::DELETE | Method::HEAD => method.as_str(),
        _ => "other",
    };
    state
        .metrics
        .request(method_label, &api::route_label(&path), status, seconds);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", value);
    }
    // A browser takes each answer as the type it says it is (no JSON or CSV run as a script).
    headers.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
