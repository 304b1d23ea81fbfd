//! The HTTP listener with its limits: connection slots given to clients once their first
//! bytes come (see [`crate::slots`]), how long a client may take to send its headers
//! (`header_read_timeout`), how long a request may take until its answer starts
//! (`request_timeout`), how long a client may take none of an answer's bytes
//! (`write_timeout`), and uploads kept on disk only while their request lives.
//!
//! `axum::serve` has none of these settings, so connections are served with hyper's own
//! HTTP/1 connection builder here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use basin_service::{Lakehouse, ServerSettings};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::slots::{OnReservedSlot, Slots};
use crate::state::AppState;

/// Serves `app` on `listener` until `shutdown` resolves, then waits for requests in flight.
/// Connections take their slot once their first bytes come ([`Slots`]).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ServerSettings,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Slots::new(
        limits.max_connections,
        limits.reserved_connections,
        limits.max_connections_per_client,
        metrics.limit_counter(),
        "",
    );
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(mut admitted) = slots.admit(peer.ip()) else {
            continue; // its client holds its share: closed
        };
        let _ = socket.set_nodelay(true);
        crate::keepalive::keep_alive(&socket, limits.tcp_keepalive);
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let (app, metrics, slots) = (app.clone(), metrics.clone(), slots.clone());
        let (handshake, header_read) = (limits.handshake_timeout, limits.header_read_timeout);
        let write_timeout = limits.write_timeout;
        tokio::spawn(async move {
            // Its turn among the pending, then its first bytes (a request, or a TLS
            // ClientHello), within the handshake time.
            let shown = async {
                admitted.pending().await;
                let mut first = [0u8; 1];
                socket.peek(&mut first).await
            };
            match tokio::time::timeout(handshake, shown).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    slots.too_slow();
                    return;
                }
            }
            let slot = match admitted.take() {
                Some(slot) => slot,
                // Every slot is taken, the reserved ones too: wait a while for one.
                None => match tokio::time::timeout(handshake, admitted.wait(true)).await {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let reserved = slot.is_reserved();
            let service = TowerToHyperService::new(tower::service_fn(
                move |mut request: Request<hyper::body::Incoming>| {
                    if reserved {
                        request.extensions_mut().insert(OnReservedSlot);
                    }
                    let mut app = app.clone();
                    async move {
                        tower::Service::call(&mut app, request.map(axum::body::Body::new)).await
                    }
                },
            ));
            let socket = Stalls::new(socket, write_timeout, metrics.clone());
            metrics.connection(1);
            let served = match tls {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(socket), service);
                    watcher.watch(connection).await
                }
                // The handshake counts as the headers' time: a client that never finishes
                // it is sent away as a slow one is.
                Some(tls) => match tokio::time::timeout(header_read, tls.accept(socket)).await {
                    Ok(Ok(socket)) => {
                        let connection = builder.serve_connection(TokioIo::new(socket), service);
                        watcher.watch(connection).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake failed: {e}");
                        Ok(())
                    }
                    Err(_) => {
                        metrics.limit_hit("header_read_timeout");
                        Ok(())
                    }
                },
            };
            if let Err(e) = served {
                if e.is_timeout() {
                    metrics.limit_hit("header_read_timeout");
                } else if crate::keepalive::ended_it(&e) {
                    metrics.limit_hit("tcp_keepalive");
                }
                tracing::debug!("connection ended: {e}");
            }
            metrics.connection(-1);
            drop((slot, admitted));
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// On a connection holding one of the slots kept for them, only `/healthz` and admins are
/// served; anyone else is told the door is full, and the connection closes so that the slot
/// is free again at once.
pub(crate) async fn reserved_only(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let on_reserved = request.extensions().get::<OnReservedSlot>().is_some();
    let admin = request
        .extensions()
        .get::<crate::auth::Caller>()
        .is_some_and(|c| c.role == Some(basin_service::Role::Admin));
    if !on_reserved || admin || request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let mut response = crate::auth::refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "every connection slot is taken (`[server] max_connections`, {}); the ones left are \
             kept for /healthz and admins",
            state.limits.max_connections
        ),
        "retry in a moment, or raise `[server] max_connections`",
    );
    use axum::http::{HeaderValue, header};
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A client's connection whose writes fail once the client has taken none of the answer's
/// bytes for `[server] write_timeout`: a client that stops reading (a stalled download, a
/// tab left open on a stream) gives its connection slot back, and the query whose rows it no
/// longer takes is dropped with the connection. A client that reads slowly but steadily is
/// never cut. hyper has no such timeout of its own.
struct Stalls {
    io: tokio::net::TcpStream,
    limit: Option<Duration>,
    /// Since when the client has taken nothing, as a timer; `None` while writes go through.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    metrics: Arc<Metrics>,
}

impl Stalls {
    fn new(io: tokio::net::TcpStream, limit: Option<Duration>, metrics: Arc<Metrics>) -> Self {
        Self {
            io,
            limit,
            stalled: None,
            metrics,
        }
    }

    /// `write`'s outcome, or an error once writes have waited past the limit.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        write: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        let (Poll::Pending, Some(limit)) = (&write, self.limit) else {
            self.stalled = None;
            return write;
        };
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.metrics.limit_hit("write_timeout");
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took nothing for {}s", limit.as_secs_f64()),
            )));
        }
        Poll::Pending
    }
}

impl tokio::io::AsyncRead for Stalls {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Stalls {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let write = std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, write)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let write = std::pin::Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, write)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let flush = std::pin::Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, flush)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Answers 503 when a request's answer has not started within `[server] request_timeout`
/// (dropping the handler stops its work). A streamed answer that has started may go on:
/// queries have their own limit.
pub(crate) async fn request_timeout(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limit) = state.limits.request_timeout else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_string();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            state.metrics.limit_hit("request_timeout");
            crate::auth::refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "{path} took longer than the server's request limit of {}s",
                    limit.as_secs_f64()
                ),
                "raise `[server] request_timeout` in basin.toml for long uploads, or send less",
            )
        }
    }
}

/// What a body over `[server] max_body_size` is told.
pub(crate) fn too_large_body(limit: usize) -> String {
    format!(
        "the request body is over {} (`[server] max_body_size`)",
        basin_core::units::format_size(limit as u64)
    )
}

pub(crate) const BODY_HINT: &str =
    "send less (a file goes through an upload, `basin --remote import`), or raise the setting";

/// Where uploads wait to be imported: `.basin/uploads/<id>/`.
pub(crate) fn uploads_dir(lakehouse: &Lakehouse) -> PathBuf {
    lakehouse
        .root()
        .join(basin_service::BASIN_DIR)
        .join("uploads")
}

/// Removes uploads left by a server that died mid-request (no request is in flight yet).
pub(crate) async fn clean_uploads(lakehouse: &Lakehouse) {
    let dir = uploads_dir(lakehouse);
    let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
        return;
    };
    let mut removed = 0;
    while let Ok(Some(entry)) = entries.next_entry().await {
        if tokio::fs::remove_dir_all(entry.path()).await.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed uploads left by an earlier server");
    }
}

/// An upload's folder, removed when the request ends however it ends (answered, failed, or
/// dropped because the client went away).
pub(crate) struct UploadFolder(pub PathBuf);

impl UploadFolder {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for UploadFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An import's error about a file kept at `kept`, naming it `name` as the caller sent it, not
/// where the server kept it.
pub(crate) fn as_sent(e: basin_core::Error, kept: &Path, name: &str) -> basin_core::Error {
    let mut named = basin_core::Error::new(
        e.kind(),
        e.message.replace(&kept.display().to_string(), name),
    );
    named.hint = e.hint;
    named
}

/// An uploaded file's name, without any folder (and never a hidden file's).
pub(crate) fn file_name(filename: &str) -> Result<String, basin_core::Error> {
    std::path::Path::new(filename)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.starts_with('.'))
        .map(str::to_string)
        .ok_or_else(|| {
            basin_core::Error::invalid(format!("`{filename}` is not a file name"))
                .with_hint("give the file's name as `filename`, e.g. orders.csv")
        })
}
