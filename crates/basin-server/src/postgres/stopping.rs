//! How a Postgres statement's work ends: answered, cancelled (psql's Ctrl-C, a cancel
//! request on a connection of its own), or its client gone.
//!
//! A statement's work holds the connection's socket until it answers, and an aggregate over
//! many rows answers only at its end: a client that went away (killed, or its own timeout
//! hit) would leave its query running until `[sql] query_timeout`, holding query threads and
//! memory, and a reader could start any number of them by connecting and leaving. HTTP does
//! not have this: hyper drops a request's work when its connection closes.
//!
//! The socket cannot be read while the statement writes to it, so the watch is on a second
//! descriptor of the same socket (`dup`), registered with tokio's reactor, waiting for the
//! peer's end of the stream (`EPOLLRDHUP`). Data the client sends meanwhile (a pipelined
//! next message) is left where it is, for the connection's loop to read afterwards. A
//! machine that vanishes without closing its socket is noticed once its keepalive gives up
//! (`[server] tcp_keepalive`, `crate::keepalive`), which ends the socket the same way.

use std::os::fd::{AsFd, OwnedFd};

use futures::channel::oneshot;
use pgwire::error::PgWireResult;
use pgwire::tokio::server::MaybeTls;
use tokio::io::Interest;

use datafusion_postgres::pgwire;

use super::errors::cancelled_by_user;

/// Runs a message's `work` until it ends, `cancelled` fires, or `hung_up` (see [`hung_up`])
/// resolves: `None` for the last, the client being gone. Dropping the work drops the
/// query's stream: it stops, and its memory is freed.
pub(super) async fn until_stopped(
    work: impl Future<Output = PgWireResult<()>>,
    cancelled: Option<oneshot::Receiver<()>>,
    hung_up: Option<impl Future<Output = ()>>,
) -> Option<PgWireResult<()>> {
    let cancelled = async {
        match cancelled {
            Some(cancelled) => cancelled.await,
            None => std::future::pending().await,
        }
    };
    let hung_up = async {
        match hung_up {
            Some(hung_up) => hung_up.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        handled = work => Some(handled),
        Ok(()) = cancelled => Some(Err(cancelled_by_user())),
        () = hung_up => None,
    }
}

/// Whether the connection behind `io` was ended by its keepalive (its client's machine stopped
/// answering), rather than closed by its client.
pub(super) fn gone_silent(io: &MaybeTls) -> bool {
    match io {
        MaybeTls::Plain(socket) => crate::keepalive::timed_out(socket),
        MaybeTls::Tls(tls) => crate::keepalive::timed_out(&tls.get_ref().0),
        _ => false,
    }
}

/// Resolves when the client has closed its end of `io`; never, when that cannot be watched
/// (not a TCP socket, or the descriptor cannot be copied or registered: the statement then
/// runs as before).
pub(super) fn hung_up(io: &MaybeTls) -> impl Future<Output = ()> + Send + 'static {
    let copied: Option<OwnedFd> = match io {
        MaybeTls::Plain(socket) => socket.as_fd().try_clone_to_owned().ok(),
        MaybeTls::Tls(tls) => tls.get_ref().0.as_fd().try_clone_to_owned().ok(),
        _ => None,
    };
    async move {
        let socket = copied.map(std::net::TcpStream::from);
        let watched = socket.and_then(|socket| {
            socket.set_nonblocking(true).ok()?;
            tokio::net::TcpStream::from_std(socket).ok()
        });
        let Some(watched) = watched else {
            return std::future::pending().await;
        };
        loop {
            let Ok(ready) = watched.ready(Interest::READABLE).await else {
                return std::future::pending().await;
            };
            if ready.is_read_closed() {
                return;
            }
            // Something to read (the client's next message), not ours to take: forget this
            // readiness and wait for the next change.
            let _ = watched.try_io(Interest::READABLE, || {
                Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
            });
        }
    }
}
