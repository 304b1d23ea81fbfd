//! What `basin serve` and `basin worker` both do around their listeners: refuse an open
//! server on a reachable address, bind, and stop on SIGINT or SIGTERM.

use std::net::SocketAddr;

use basin_core::{Error, Result};
use basin_service::Lakehouse;

/// Refuses `--no-auth` on an address other machines can reach, warns when tokens would
/// cross the network in the clear (no TLS beyond loopback), and when no token exists (every
/// request would be refused).
pub(crate) async fn check_open(
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
    if !no_auth && lakehouse.tokens().list().await?.is_empty() {
        tracing::warn!(
            "no access tokens exist, so every request will get 401: create one with `basin token create --role reader`"
        );
    }
    Ok(())
}

pub(crate) async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.map_err(|e| {
        Error::io(format!("cannot listen on {address}"))
            .with_source(e)
            .with_hint("pick another port with --listen")
    })
}

/// Resolves once `stopped` turns true.
pub(crate) fn until_stopped(
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + use<> {
    let mut stopped = stopped.clone();
    async move {
        let _ = stopped.wait_for(|s| *s).await;
    }
}

pub(crate) async fn shutdown_signal() {
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
