//! One Postgres connection, served by Basin's own loop over pgwire's message handling
//! (`process_message`, `process_error`) rather than pgwire's `process_socket`, for walls that
//! loop does not have:
//! - a FATAL error ends the connection. pgwire's loop shuts only the write side and goes on
//!   reading, so after a failed login a client could still send statements, which ran, and
//!   hold its connection slot for as long as it liked;
//! - a message is at most `[server] pg_max_message_size` bytes, and before login at most
//!   [`LOGIN_MESSAGE_SIZE`] (a startup packet and a password: a token). pgwire buffers up to
//!   1 GiB of one message, from anyone;
//! - the login takes at most `[server] handshake_timeout` (pgwire's is a fixed minute), and
//!   only then does the connection take a slot (`crate::slots`): the slots kept past
//!   `max_connections` go to admin tokens only;
//! - with `[server] tls_cert` and `tls_key`, logins from other machines come over TLS only
//!   (`sslmode=require`; see `crate::tls`);
//! - a cancel request (psql's Ctrl-C) stops the statement running on the connection whose
//!   random key it names (pgwire's default handler does nothing, and every key was 0);
//! - once logged in, a client that sends nothing for `[server] pg_idle_timeout` is sent away,
//!   and one whose token was revoked is sent away at its next message (HTTP checks the
//!   token on every request; a Postgres connection checks it at most every
//!   [`TOKEN_CHECK`]);
//! - a connection holds at most `[server] pg_max_prepared` named prepared statements and
//!   portals, and `pg_max_prepared_size` bytes of their text and parameters (pgwire keeps
//!   them until they are closed, without a bound).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use pgwire::api::{
    ClientInfo, ConnectionGuard, ConnectionHandle, PgWireConnectionState, PgWireServerHandlers,
};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{
    MaybeTls, PgWireMessageServerCodec, negotiate_tls, process_error, process_message,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use datafusion_postgres::pgwire;

use super::backend::Handlers;
use super::errors::{basin_error, cancelled_by_user};
use super::settings::TOKEN_ID;
use crate::metrics::Metrics;

/// The largest message before login: a startup packet (pgwire refuses those over 10,000
/// bytes) or a password message, whose password is a Basin token of a few dozen bytes.
pub(super) const LOGIN_MESSAGE_SIZE: usize = 16 << 10;

/// How often, at most, a logged-in connection looks its token up again (at its next
/// message), so that revoking a token ends the sessions it opened.
pub(super) const TOKEN_CHECK: Duration = Duration::from_secs(1);

/// What one connection may send.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) login_timeout: Duration,
    pub(super) max_message_size: usize,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_prepared: usize,
    pub(super) max_prepared_size: usize,
}

/// Serves one client until it leaves, a FATAL error, or a limit.
pub(super) async fn serve(
    socket: TcpStream,
    handlers: Handlers,
    limits: Limits,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    metrics: Arc<Metrics>,
    admitted: crate::slots::Admitted,
) -> io::Result<()> {
    let tls_only = tls.is_some() && !socket.peer_addr()?.ip().to_canonical().is_loopback();
    let login = tokio::time::sleep(limits.login_timeout);
    tokio::pin!(login);
    // Answers SSLRequest with the handshake when the server has TLS (refuses it otherwise),
    // and keeps what it read.
    let negotiated = tokio::select! {
        () = &mut login => {
            metrics.limit_hit("pg_login_timeout");
            return Ok(());
        }
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    let Some(framed) = negotiated else {
        return Ok(()); // TLS without an SSLRequest first: not a Postgres client of ours
    };
    let secure = framed.is_secure();
    let old = framed.into_parts();
    let mut parts = FramedParts::new(Capped::new(old.io), old.codec);
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);
    // The login takes its slot from here (`Handlers::welcome`), and keeps it with the
    // connection.
    socket
        .session_extensions()
        .insert(Unseated(std::sync::Mutex::new(Some(admitted))));
    // Over plain TCP from another machine, only a cancel request (which carries no token:
    // libpq sends it unencrypted) is taken.
    let mut refuse_plain = tls_only && !secure;

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    // Once logged in: the handle a cancel request (psql's Ctrl-C) fires, and its
    // registration, which ends with the connection.
    let mut cancels: Option<(Arc<ConnectionHandle>, ConnectionGuard)> = None;
    let mut token_checked = Instant::now();
    // The named prepared statements (`S`) and portals (`P`) the client has open.
    let mut prepared = Prepared::default();
    loop {
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        socket.get_mut().limit = if logging_in {
            LOGIN_MESSAGE_SIZE.min(limits.max_message_size)
        } else {
            limits.max_message_size
        };
        let next = if logging_in {
            tokio::select! {
                () = &mut login => {
                    metrics.limit_hit("pg_login_timeout");
                    let why = format!(
                        "the login took longer than {}s (`[server] handshake_timeout`)",
                        limits.login_timeout.as_secs_f64()
                    );
                    return fatal(&mut socket, "08P01", why, None).await;
                }
                next = socket.next() => next,
            }
        } else {
            match limits.idle_timeout {
                None => socket.next().await,
                Some(idle) => match tokio::time::timeout(idle, socket.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        metrics.limit_hit("pg_idle_timeout");
                        let why = format!(
                            "terminating connection due to idle-session timeout: nothing sent \
                             for {}s (`[server] pg_idle_timeout`)",
                            idle.as_secs_f64()
                        );
                        return fatal(&mut socket, "57P05", why, None).await;
                    }
                },
            }
        };
        socket.get_mut().read = 0; // the next message starts its count
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(_)) if socket.get_ref().refused => {
                metrics.limit_hit("pg_max_message_size");
                let limit = socket.get_ref().limit;
                let (why, hint) = if logging_in {
                    (
                        format!("a message before login is over {limit} bytes"),
                        "log in first: the password is a Basin access token".to_string(),
                    )
                } else {
                    (
                        format!("a message is over {limit} bytes (`[server] pg_max_message_size`)"),
                        "send a shorter statement or smaller parameters, or raise the setting"
                            .to_string(),
                    )
                };
                return fatal(&mut socket, "54000", why, Some(hint)).await;
            }
            Some(Err(PgWireError::IoError(e))) => {
                tracing::debug!("postgres: connection lost: {e}");
                return Ok(());
            }
            Some(Err(e)) => {
                // pgwire's own checks (a malformed message, a password message over 10,000
                // bytes): a protocol violation, which ends the connection.
                tracing::debug!("postgres: cannot read a message: {e}");
                return fatal(&mut socket, "08P01", e.to_string(), None).await;
            }
            None => return Ok(()),
        };
        if refuse_plain && !matches!(message, PgWireFrontendMessage::CancelRequest(_)) {
            let why = "this server takes Postgres logins over TLS only (from other machines)";
            let hint = "connect with sslmode=require (psql \"host=... sslmode=require\")";
            return fatal(&mut socket, "28000", why.into(), Some(hint.into())).await;
        }
        refuse_plain = false;
        match message {
            PgWireFrontendMessage::Terminate(_) => return Ok(()),
            // A cancel request comes on a connection of its own, which then ends.
            PgWireFrontendMessage::CancelRequest(request) => {
                handlers
                    .0
                    .cancels
                    .cancel(request.pid, &request.secret_key)
                    .await;
                return Ok(());
            }
            _ => {}
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let token = socket.metadata().get(TOKEN_ID).cloned();
        if let Some(id) = token.filter(|_| token_checked.elapsed() >= TOKEN_CHECK) {
            match handlers.0.lakehouse.list_tokens().await {
                Ok(tokens) if tokens.iter().any(|t| t.id == id) => token_checked = Instant::now(),
                Ok(_) => {
                    let hint = "log in again with a live token (`basin token create`)";
                    let why = "the access token this connection logged in with was revoked";
                    return fatal(&mut socket, "28000", why.into(), Some(hint.into())).await;
                }
                // Not known to be revoked, not known to be live: this message fails, and the
                // next one asks again. A Sync ends the failed exchange (else the client would
                // wait for a ReadyForQuery that never comes).
                Err(e) => {
                    tracing::warn!("postgres: cannot look the connection's token up: {e}");
                    let e = basin_error(e);
                    let sync = matches!(message, PgWireFrontendMessage::Sync(_));
                    process_error(&mut socket, e, extended_query && !sync).await?;
                    continue;
                }
            }
        }
        let awaiting_sync = matches!(socket.state(), PgWireConnectionState::AwaitingSync);
        let opens = if awaiting_sync {
            None
        } else {
            prepared.opens(&message)
        };
        let over = opens.as_ref().and_then(|(name, size)| {
            if prepared.len() >= limits.max_prepared && !prepared.contains(name) {
                Some((
                    "pg_max_prepared",
                    format!(
                        "this connection already holds {} named prepared statements and \
                         portals (`[server] pg_max_prepared`)",
                        limits.max_prepared
                    ),
                ))
            } else if prepared.bytes_with(name, *size) > limits.max_prepared_size {
                Some((
                    "pg_max_prepared_size",
                    format!(
                        "this connection's named prepared statements and portals would hold \
                         {} bytes of text and parameters, over `[server] pg_max_prepared_size` \
                         ({})",
                        prepared.bytes_with(name, *size),
                        limits.max_prepared_size
                    ),
                ))
            } else {
                None
            }
        });
        if let Some((limit, message)) = over {
            metrics.limit_hit(limit);
            let mut info = ErrorInfo::new("ERROR".into(), "53400".into(), message);
            info.hint = Some(
                "close the ones no longer needed (the protocol's Close message), or use \
                              unnamed ones"
                    .into(),
            );
            process_error(&mut socket, PgWireError::UserError(Box::new(info)), true).await?;
            continue;
        }
        let closes = if awaiting_sync {
            None
        } else {
            Prepared::closes(&message)
        };
        let cancelled = match &cancels {
            Some((handle, _)) => Some(handle.start_query().await),
            None => None,
        };
        let work = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        );
        let handled = match cancelled {
            None => work.await,
            // Dropping the work drops the query's stream: it stops, and its memory is freed.
            Some(cancelled) => tokio::select! {
                handled = work => handled,
                Ok(()) = cancelled => Err(cancelled_by_user()),
            },
        };
        if cancels.is_none() && matches!(socket.state(), PgWireConnectionState::ReadyForQuery) {
            let (pid, secret) = socket.pid_and_secret_key();
            cancels = Some(handlers.0.cancels.register(pid, secret));
        }
        if handled.is_ok() {
            if let Some((name, size)) = opens {
                prepared.insert(name, size);
            }
            if let Some(name) = closes {
                prepared.remove(&name);
            }
        }
        if let Err(e) = handled {
            let info = ErrorInfo::from(e);
            let ending = info.is_fatal();
            process_error(
                &mut socket,
                PgWireError::UserError(Box::new(info)),
                extended_query,
            )
            .await?;
            if ending {
                return linger(socket.get_mut()).await;
            }
        }
    }
}

/// A connection's place among its client's connections, until its login takes a slot.
pub(super) struct Unseated(pub(super) std::sync::Mutex<Option<crate::slots::Admitted>>);

/// The slot a logged-in connection holds.
pub(super) struct Seated(
    #[allow(dead_code)] pub(super) std::sync::Mutex<crate::slots::Admitted>,
    #[allow(dead_code)] pub(super) crate::slots::Slot,
);

/// The named prepared statements (`S`) and portals (`P`) a connection has open, as its
/// messages open and close them (pgwire's store cannot be counted).
#[derive(Default)]
struct Prepared {
    open: HashMap<(u8, String), usize>,
    /// The bytes of text and parameters the open ones hold.
    bytes: usize,
}

impl Prepared {
    /// The name a `Parse` or `Bind` message opens (unnamed ones replace each other), and the
    /// bytes it holds: a statement's text and parameter types, a portal's parameters.
    fn opens(&self, message: &PgWireFrontendMessage) -> Option<((u8, String), usize)> {
        let named = |kind: u8, name: &Option<String>| {
            name.as_ref()
                .filter(|n| !n.is_empty())
                .map(|n| (kind, n.clone()))
        };
        match message {
            PgWireFrontendMessage::Parse(parse) => {
                named(b'S', &parse.name).map(|n| (n, parse.query.len() + 4 * parse.type_oids.len()))
            }
            PgWireFrontendMessage::Bind(bind) => named(b'P', &bind.portal_name).map(|n| {
                let values: usize = bind.parameters.iter().flatten().map(|v| v.len()).sum();
                (n, values + 4 * bind.parameters.len())
            }),
            _ => None,
        }
    }

    /// The name a `Close` message closes.
    fn closes(message: &PgWireFrontendMessage) -> Option<(u8, String)> {
        match message {
            PgWireFrontendMessage::Close(close) => {
                Some((close.target_type, close.name.clone().unwrap_or_default()))
            }
            _ => None,
        }
    }

    fn len(&self) -> usize {
        self.open.len()
    }

    fn contains(&self, name: &(u8, String)) -> bool {
        self.open.contains_key(name)
    }

    /// The bytes held once `name` holds `size` (replacing what it held).
    fn bytes_with(&self, name: &(u8, String), size: usize) -> usize {
        self.bytes - self.open.get(name).copied().unwrap_or(0) + size
    }

    fn insert(&mut self, name: (u8, String), size: usize) {
        self.bytes = self.bytes_with(&name, size);
        self.open.insert(name, size);
    }

    fn remove(&mut self, name: &(u8, String)) {
        if let Some(size) = self.open.remove(name) {
            self.bytes -= size;
        }
    }
}

/// Sends a FATAL error and ends the connection (see [`linger`]).
async fn fatal<S>(
    socket: &mut Framed<Capped, PgWireMessageServerCodec<S>>,
    code: &str,
    message: String,
    hint: Option<String>,
) -> io::Result<()> {
    let mut info = ErrorInfo::new("FATAL".into(), code.into(), message);
    info.hint = hint;
    socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await?;
    linger(socket.get_mut()).await
}

/// Ends a connection after a FATAL error: the write side first, then what the client still
/// sends is read and dropped for a moment (at most [`LINGER`] and [`LINGER_BYTES`]), so that
/// closing with unread data (a reset) does not discard the error before the client reads it.
async fn linger(socket: &mut Capped) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = &mut socket.io;
    // Already shut after pgwire's own FATAL errors: a second shutdown may fail, harmlessly.
    let _ = io.shutdown().await;
    let mut sink = vec![0u8; 64 << 10];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
    Ok(())
}

/// How long, and how many bytes, a connection ended by a FATAL error reads on.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// The client's stream, counting the bytes read since the last whole message: past `limit`
/// a read fails, so pgwire never buffers more of one message than that. Reads are cut to the
/// room left, so one read cannot overshoot by more than a byte.
pub(super) struct Capped {
    io: MaybeTls,
    limit: usize,
    read: usize,
    /// A read failed because of the limit.
    refused: bool,
}

impl Capped {
    fn new(io: MaybeTls) -> Self {
        Self {
            io,
            limit: LOGIN_MESSAGE_SIZE,
            read: 0,
            refused: false,
        }
    }
}

impl AsyncRead for Capped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let room = (this.limit + 1).saturating_sub(this.read);
        if room == 0 {
            this.refused = true;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message over the size limit",
            )));
        }
        // As tokio's `Take` does: read into the first `room` bytes of the free space.
        let mut part = buf.take(room);
        let start = part.filled().as_ptr();
        ready!(Pin::new(&mut this.io).poll_read(cx, &mut part))?;
        assert_eq!(
            start,
            part.filled().as_ptr(),
            "the reader swapped the buffer"
        );
        let n = part.filled().len();
        // SAFETY: the `n` bytes were just initialized by the read above.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        this.read += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
