//! The Postgres wire protocol (`basin serve --pg-listen`), read-only, so `psql`, `psycopg`
//! and BI tools query the lakehouse.
//!
//! pgwire speaks the protocol, arrow-pg encodes Arrow batches as rows and
//! datafusion-pg-catalog answers the `pg_catalog` queries clients send (`\dt`).
//! datafusion-postgres' own server serves one fixed DataFusion session; Basin needs a session
//! per ref that follows the branch head, a token as password and metering, so the handlers
//! here are Basin's own, over those pieces.
//!
//! A connection reads one ref: the database name (`psql -d dev`; the default database, or
//! one named like the user, means `main`), changed with `SET basin.ref = 'dev'`. Each
//! statement sees the ref's current head.

use std::net::SocketAddr;
use std::sync::Arc;

use basin_core::Error;
use basin_service::Lakehouse;
use tracing::Instrument;

use crate::metrics::Metrics;
use backend::Handlers;

mod backend;
mod capped;
mod catalog;
mod connection;
mod errors;
mod functions;
mod login;
mod prepared;
mod queries;
mod settings;
mod stopping;

/// The Postgres door's listener, bound before anything is served.
pub(crate) struct Door(tokio::net::TcpListener);

impl Door {
    /// The address it listens on (port 0 picks a free one).
    pub(crate) fn addr(&self) -> basin_core::Result<SocketAddr> {
        self.0.local_addr().map_err(|e| {
            Error::io("cannot read the address the Postgres door is bound to").with_source(e)
        })
    }
}

/// Serves the Postgres protocol at `door` until `shutdown` resolves.
pub(crate) async fn serve(
    Door(listener): Door,
    lakehouse: Lakehouse,
    metrics: Arc<Metrics>,
    shared: crate::state::Shared,
    open: bool,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handlers = Handlers::new(lakehouse, metrics, shared, open);
    tokio::pin!(shutdown);
    let server = &handlers.0.lakehouse.settings().server;
    let limits = connection::Limits {
        login_timeout: server.handshake_timeout,
        max_message_size: server.pg_max_message_size,
        idle_timeout: server.pg_idle_timeout,
        max_prepared: server.pg_max_prepared,
        max_prepared_size: server.pg_max_prepared_size,
    };
    // As over HTTP: a slot is taken once a client has logged in (`crate::slots`).
    let slots = crate::slots::Slots::new(
        server.max_connections,
        server.reserved_connections,
        server.max_connections_per_client,
        handlers.0.metrics.limit_counter(),
        "pg_",
    );
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("postgres: cannot accept a connection: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(mut admitted) = slots.admit(peer.ip()) else {
            continue; // its client holds its share: closed
        };
        crate::keepalive::keep_alive(&socket, server.tcp_keepalive);
        let handlers = handlers.clone();
        let metrics = handlers.0.metrics.clone();
        let tls = tls.clone();
        let span = tracing::info_span!("postgres", %peer);
        tokio::spawn(
            async move {
                // Its turn among the pending; the login time counts from here.
                if tokio::time::timeout(limits.login_timeout, admitted.pending())
                    .await
                    .is_err()
                {
                    metrics.limit_hit("pg_login_timeout");
                    return;
                }
                metrics.pg_connection(1);
                if let Err(e) =
                    connection::serve(socket, handlers, limits, tls, metrics.clone(), admitted)
                        .await
                {
                    if crate::keepalive::ended_it(&e) {
                        metrics.limit_hit("pg_tcp_keepalive");
                    }
                    tracing::debug!("connection ended: {e}");
                }
                metrics.pg_connection(-1);
            }
            .instrument(span),
        );
    }
}

/// Binds the Postgres listener (before anything is served, so a taken port fails at once).
pub(crate) async fn bind(listen: SocketAddr) -> basin_core::Result<Door> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map(Door)
        .map_err(|e| {
            Error::io(format!("cannot listen for Postgres clients on {listen}"))
                .with_source(e)
                .with_hint("pick another port with --pg-listen")
        })
}
