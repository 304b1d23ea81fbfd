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
//!   random key it names (pgwire's default handler does nothing, and every key was 0), and
//!   a client that closes the connection while its statement runs stops it too
//!   ([`super::stopping`]);
//! - once logged in, a client that sends nothing for `[server] pg_idle_timeout` is sent away,
//!   and one whose token was revoked, or whose sign-in token expired, is sent away at its
//!   next message (HTTP checks the token on every request; a Postgres connection looks a
//!   Basin token up again at most every [`TOKEN_CHECK`]);
//! - a connection holds at most `[server] pg_max_prepared` named prepared statements and
//!   portals, and `pg_max_prepared_size` bytes of their text and parameters (pgwire keeps
//!   them until they are closed, without a bound).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use pgwire::api::{
    ClientInfo, ConnectionGuard, ConnectionHandle, PgWireConnectionState, PgWireServerHandlers,
};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{
    PgWireMessageServerCodec, negotiate_tls, process_error, process_message,
};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use datafusion_postgres::pgwire;

use super::backend::Handlers;
use super::capped::Capped;
use super::errors::basin_error;
use super::prepared::Prepared;
use super::queries::Parsed;
use super::settings::{EXPIRES, GRANTS, READER, TOKEN_ID, WHO};
use super::stopping::{gone_silent, hung_up, until_stopped};
use crate::metrics::Metrics;
use basin_catalog::Grants;
use basin_catalog::actor::{self, Actor};

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

/// A connection's framed stream once TLS is settled: pgwire's codec over [`Capped`] reads.
type Socket = Framed<Capped, PgWireMessageServerCodec<Parsed>>;

/// Serves one client until it leaves, a FATAL error, or a limit.
pub(super) async fn serve(
    socket: TcpStream,
    handlers: Handlers,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
    admitted: crate::slots::Admitted,
) -> io::Result<()> {
    let tls_only = tls.is_some() && !socket.peer_addr()?.ip().to_canonical().is_loopback();
    let login = tokio::time::sleep(limits.login_timeout);
    tokio::pin!(login);
    let Some((socket, secure)) = start(socket, tls, login.as_mut(), &metrics, admitted).await?
    else {
        return Ok(());
    };
    let mut connection = Connection {
        socket,
        handlers,
        limits,
        metrics,
        // Over plain TCP from another machine, only a cancel request (which carries no
        // token: libpq sends it unencrypted) is taken.
        refuse_plain: tls_only && !secure,
        cancels: None,
        token_checked: Instant::now(),
        grants: None,
        prepared: Prepared::default(),
    };
    connection.run(login).await
}

/// Answers SSLRequest with the handshake when the server has TLS (refuses it otherwise),
/// within the login time, and frames what follows with capped reads; `None` when the
/// connection ends here. Whether the stream is encrypted comes with it.
async fn start(
    socket: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    login: Pin<&mut tokio::time::Sleep>,
    metrics: &Metrics,
    admitted: crate::slots::Admitted,
) -> io::Result<Option<(Socket, bool)>> {
    let negotiated = tokio::select! {
        () = login => {
            metrics.limit_hit("pg_login_timeout");
            return Ok(None);
        }
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    let Some(framed) = negotiated else {
        return Ok(None); // TLS without an SSLRequest first: not a Postgres client of ours
    };
    let secure = framed.is_secure();
    let old = framed.into_parts();
    let mut parts = FramedParts::new(Capped::new(old.io, LOGIN_MESSAGE_SIZE), old.codec);
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let socket = Framed::from_parts(parts);
    // The login takes its slot from here (`Handlers::welcome`), and keeps it with the
    // connection.
    socket
        .session_extensions()
        .insert(Unseated(std::sync::Mutex::new(Some(admitted))));
    Ok(Some((socket, secure)))
}

/// One connection as it goes on: its socket and what it holds.
struct Connection {
    socket: Socket,
    handlers: Handlers,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Nothing but a cancel request is taken (a login over plain TCP from another machine).
    refuse_plain: bool,
    /// Once logged in: the handle a cancel request (psql's Ctrl-C) fires, and its
    /// registration, which ends with the connection.
    cancels: Option<(Arc<ConnectionHandle>, ConnectionGuard)>,
    token_checked: Instant,
    /// The logged-in token's grants, read once from the login's metadata.
    grants: Option<Arc<Grants>>,
    /// The named prepared statements (`S`) and portals (`P`) the client has open.
    prepared: Prepared,
}

/// Whether a connection's token is still live, as [`Connection::check_token`] finds it.
enum TokenCheck {
    Live,
    /// Revoked: the connection was ended.
    Ended,
    /// Not known: this message failed, and the next one asks again.
    Unknown,
}

impl Connection {
    /// Reads and handles messages until the client leaves or the connection is ended.
    async fn run(&mut self, mut login: Pin<&mut tokio::time::Sleep>) -> io::Result<()> {
        // A clone: the handlers pgwire takes borrow what they come from.
        let handlers = self.handlers.clone();
        let startup = handlers.startup_handler();
        let simple = handlers.simple_query_handler();
        // The handlers themselves, not `extended_query_handler()`: its type names the
        // statement type the socket's codec is declared with ([`Parsed`]).
        let extended = Arc::new(handlers.clone());
        let copy = handlers.copy_handler();
        let cancel = handlers.cancel_handler();
        loop {
            let Some(message) = self.next_message(login.as_mut()).await? else {
                return Ok(());
            };
            if self.refuse_plain && !matches!(message, PgWireFrontendMessage::CancelRequest(_)) {
                let why = "this server takes Postgres logins over TLS only (from other machines)";
                let hint = "connect with sslmode=require (psql \"host=... sslmode=require\")";
                return fatal(&mut self.socket, "28000", why.into(), Some(hint.into())).await;
            }
            self.refuse_plain = false;
            match message {
                PgWireFrontendMessage::Terminate(_) => return Ok(()),
                // A cancel request comes on a connection of its own, which then ends.
                PgWireFrontendMessage::CancelRequest(request) => {
                    let cancels = &self.handlers.0.cancels;
                    cancels.cancel(request.pid, &request.secret_key).await;
                    return Ok(());
                }
                _ => {}
            }
            let extended_query = match self.socket.state() {
                PgWireConnectionState::CopyInProgress(extended) => extended,
                _ => message.is_extended_query(),
            };
            match self.check_token(&message, extended_query).await? {
                TokenCheck::Live => {}
                TokenCheck::Ended => return Ok(()),
                TokenCheck::Unknown => continue,
            }
            let awaiting_sync = matches!(self.socket.state(), PgWireConnectionState::AwaitingSync);
            let opens = if awaiting_sync {
                None
            } else {
                self.prepared.opens(&message)
            };
            if let Some((name, size)) = &opens
                && let Some((limit, text)) = self.over_prepared_limits(name, *size)
            {
                self.metrics.limit_hit(limit);
                let mut info = ErrorInfo::new("ERROR".into(), "53400".into(), text);
                info.hint = Some(
                    "close the ones no longer needed (the protocol's Close message), or use \
                     unnamed ones"
                        .into(),
                );
                let error = PgWireError::UserError(Box::new(info));
                process_error(&mut self.socket, error, true).await?;
                continue;
            }
            let closes = if awaiting_sync {
                None
            } else {
                Prepared::closes(&message)
            };
            let cancelled = match &self.cancels {
                Some((handle, _)) => Some(handle.start_query().await),
                None => None,
            };
            // Only these run statements, which may work for long before they answer.
            let runs = matches!(
                message,
                PgWireFrontendMessage::Query(_) | PgWireFrontendMessage::Execute(_)
            );
            let hung_up = runs.then(|| hung_up(&self.socket.get_ref().io));
            let actor = self.actor();
            let work = actor::scope(
                actor,
                process_message(
                    message,
                    &mut self.socket,
                    startup.clone(),
                    simple.clone(),
                    extended.clone(),
                    copy.clone(),
                    cancel.clone(),
                ),
            );
            let Some(handled) = until_stopped(work, cancelled, hung_up).await else {
                self.left_while_running();
                return Ok(());
            };
            if self.cancels.is_none()
                && matches!(self.socket.state(), PgWireConnectionState::ReadyForQuery)
            {
                let (pid, secret) = self.socket.pid_and_secret_key();
                self.cancels = Some(self.handlers.0.cancels.register(pid, secret));
            }
            match handled {
                Ok(()) => {
                    if let Some((name, size)) = opens {
                        self.prepared.insert(name, size);
                    }
                    if let Some(name) = closes {
                        self.prepared.remove(&name);
                    }
                }
                Err(e) => {
                    let info = ErrorInfo::from(e);
                    let ending = info.is_fatal();
                    let error = PgWireError::UserError(Box::new(info));
                    process_error(&mut self.socket, error, extended_query).await?;
                    if ending {
                        return linger(self.socket.get_mut()).await;
                    }
                }
            }
        }
    }

    /// Says why a connection ended while its statement ran (the statement was stopped with
    /// it): its client closed it, or its machine stopped answering (`[server] tcp_keepalive`).
    fn left_while_running(&self) {
        if gone_silent(&self.socket.get_ref().io) {
            self.metrics.limit_hit("pg_tcp_keepalive");
            tracing::info!(
                "a Postgres client stopped answering (tcp_keepalive) while its statement ran; \
                 stopped it"
            );
        } else {
            tracing::info!("a Postgres client left while its statement ran; stopped it");
        }
    }

    /// Who the connection acts as: its token's name and grants, through the `postgres` door
    /// (with `--no-auth`, everything; before a login, nothing).
    fn actor(&mut self) -> Actor {
        let metadata = self.socket.metadata();
        if self.grants.is_none()
            && let Some(json) = metadata.get(GRANTS)
        {
            let granted = serde_json::from_str::<Grants>(json).unwrap_or_default();
            self.grants = Some(Arc::new(granted));
        }
        let grants = match (self.handlers.0.open, &self.grants) {
            (true, _) => None,
            (false, Some(granted)) => Some(granted.clone()),
            (false, None) => Some(Arc::new(Grants::default())),
        };
        let metadata = self.socket.metadata();
        Actor {
            principal: metadata.get(WHO).cloned(),
            token_id: metadata.get(READER).cloned(),
            door: "postgres",
            bypass_protection: false,
            grants,
        }
    }

    /// The client's next message, read within the login time (while logging in) or the idle
    /// time, and within the size a message may have then; `None` when the connection ends
    /// (the client left, or a limit ended it with a FATAL error).
    async fn next_message(
        &mut self,
        login: Pin<&mut tokio::time::Sleep>,
    ) -> io::Result<Option<PgWireFrontendMessage>> {
        let (limits, metrics, socket) = (&self.limits, &self.metrics, &mut self.socket);
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
                () = login => {
                    metrics.limit_hit("pg_login_timeout");
                    let why = format!(
                        "the login took longer than {}s (`[server] handshake_timeout`)",
                        limits.login_timeout.as_secs_f64()
                    );
                    fatal(socket, "08P01", why, None).await?;
                    return Ok(None);
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
                        fatal(socket, "57P05", why, None).await?;
                        return Ok(None);
                    }
                },
            }
        };
        socket.get_mut().read = 0; // the next message starts its count
        match next {
            Some(Ok(message)) => Ok(Some(message)),
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
                fatal(socket, "54000", why, Some(hint)).await?;
                Ok(None)
            }
            Some(Err(PgWireError::IoError(e))) => {
                if crate::keepalive::ended_it(&e) {
                    metrics.limit_hit("pg_tcp_keepalive");
                }
                tracing::debug!("postgres: connection lost: {e}");
                Ok(None)
            }
            Some(Err(e)) => {
                // pgwire's own checks (a malformed message, a password message over 10,000
                // bytes): a protocol violation, which ends the connection.
                tracing::debug!("postgres: cannot read a message: {e}");
                fatal(socket, "08P01", e.to_string(), None).await?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Ends the connection when its sign-in token has expired, and looks a Basin token up
    /// again, at most every [`TOKEN_CHECK`]: a revoked one ends the connection. When the
    /// lookup fails, `message` fails, and the next one asks
    /// again; a Sync ends the failed exchange (else the client would wait for a
    /// ReadyForQuery that never comes).
    async fn check_token(
        &mut self,
        message: &PgWireFrontendMessage,
        extended_query: bool,
    ) -> io::Result<TokenCheck> {
        let expires = self.socket.metadata().get(EXPIRES);
        if let Some(at) = expires.and_then(|at| at.parse::<i64>().ok())
            && basin_core::time::now_ms() >= at
        {
            let why = "the sign-in token this connection logged in with has expired";
            let hint = "connect again with a fresh token from your sign-in provider";
            fatal(&mut self.socket, "28000", why.into(), Some(hint.into())).await?;
            return Ok(TokenCheck::Ended);
        }
        let token = self.socket.metadata().get(TOKEN_ID).cloned();
        let Some(id) = token.filter(|_| self.token_checked.elapsed() >= TOKEN_CHECK) else {
            return Ok(TokenCheck::Live);
        };
        match self.handlers.0.lakehouse.tokens().list().await {
            Ok(tokens) if tokens.iter().any(|t| t.id == id) => {
                self.token_checked = Instant::now();
                Ok(TokenCheck::Live)
            }
            Ok(_) => {
                let hint = "log in again with a live token (`basin token create`)";
                let why = "the access token this connection logged in with was revoked";
                fatal(&mut self.socket, "28000", why.into(), Some(hint.into())).await?;
                Ok(TokenCheck::Ended)
            }
            Err(e) => {
                tracing::warn!("postgres: cannot look the connection's token up: {e}");
                let e = basin_error(e);
                let sync = matches!(message, PgWireFrontendMessage::Sync(_));
                process_error(&mut self.socket, e, extended_query && !sync).await?;
                Ok(TokenCheck::Unknown)
            }
        }
    }

    /// The limit a prepared statement or portal `name` holding `size` bytes would go past
    /// (`[server] pg_max_prepared`, `pg_max_prepared_size`), and what the client is told.
    fn over_prepared_limits(
        &self,
        name: &(u8, String),
        size: usize,
    ) -> Option<(&'static str, String)> {
        let (prepared, limits) = (&self.prepared, &self.limits);
        if prepared.len() >= limits.max_prepared && !prepared.contains(name) {
            Some((
                "pg_max_prepared",
                format!(
                    "this connection already holds {} named prepared statements and \
                     portals (`[server] pg_max_prepared`)",
                    limits.max_prepared
                ),
            ))
        } else if prepared.bytes_with(name, size) > limits.max_prepared_size {
            Some((
                "pg_max_prepared_size",
                format!(
                    "this connection's named prepared statements and portals would hold \
                     {} bytes of text and parameters, over `[server] pg_max_prepared_size` \
                     ({})",
                    prepared.bytes_with(name, size),
                    limits.max_prepared_size
                ),
            ))
        } else {
            None
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
