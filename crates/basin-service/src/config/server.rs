//! `[server]`: what `basin serve` accepts from its callers, and its defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{DurationValue, SizeValue};
use crate::{Error, Result};

/// `[server]`: what `basin serve` accepts from its callers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub allowed_hosts: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub reserved_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub max_queries_per_reader: Option<usize>,
    pub max_runs_per_writer: Option<usize>,
    pub handshake_timeout: Option<DurationValue>,
    pub tcp_keepalive: Option<DurationValue>,
    pub header_read_timeout: Option<DurationValue>,
    pub request_timeout: Option<DurationValue>,
    pub write_timeout: Option<DurationValue>,
    pub max_upload_size: Option<SizeValue>,
    pub json_max_rows: Option<u64>,
    pub json_max_bytes: Option<SizeValue>,
    pub mcp_max_rows: Option<u64>,
    pub mcp_max_bytes: Option<SizeValue>,
    pub mcp_max_batch: Option<usize>,
    pub pg_max_message_size: Option<SizeValue>,
    pub pg_idle_timeout: Option<DurationValue>,
    pub pg_max_prepared: Option<usize>,
    pub pg_max_prepared_size: Option<SizeValue>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_body_size: Option<SizeValue>,
    pub max_uploads: Option<usize>,
    pub max_uploads_per_writer: Option<usize>,
    pub audit_refusals_per_minute: Option<u64>,
}

/// What `basin serve` accepts, resolved.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Host names (besides the listen address, and `localhost` on loopback) requests may
    /// name in `Host`; `*` allows any.
    pub allowed_hosts: Vec<String>,
    /// Connections served at once (HTTP and Postgres each), and connections waiting for
    /// their slot; more wait to be accepted.
    pub max_connections: usize,
    /// Slots past `max_connections` kept for `/healthz` and admin tokens.
    pub reserved_connections: usize,
    /// Connections one client address may hold at once, per door.
    pub max_connections_per_client: usize,
    /// Statements one reader (a token; without tokens, the local user) runs at once across
    /// the doors that run SQL (HTTP, Postgres, `/mcp`); more wait their turn.
    pub max_queries_per_reader: usize,
    /// Pipeline runs and deploys one writer (a token; without tokens, the local user) has
    /// going at once through the server (HTTP, `/mcp`); more wait their turn while their
    /// client waits.
    pub max_runs_per_writer: usize,
    /// How long a new connection may take to show itself before it gets a slot: its first
    /// bytes (HTTP), its login (Postgres).
    pub handshake_timeout: std::time::Duration,
    /// How long a connection may be silent before the kernel probes its peer; one whose peer
    /// acknowledges nothing for twice this long is ended (`None`: no probes).
    pub tcp_keepalive: Option<std::time::Duration>,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: std::time::Duration,
    /// How long a request may take until its answer starts (a streamed answer may go on).
    pub request_timeout: Option<std::time::Duration>,
    /// How long an HTTP client may take none of an answer's bytes before its connection is
    /// closed (`None`: forever).
    pub write_timeout: Option<std::time::Duration>,
    /// The largest upload (`POST /api/v1/tables/NAME/import`).
    pub max_upload_size: u64,
    /// Rows and bytes of a JSON query answer; past either the answer is cut and says so.
    pub json_max_rows: u64,
    pub json_max_bytes: u64,
    /// Rows and bytes of text an agent's query answer shows (`basin mcp`, `/mcp`): an answer
    /// goes into a model's context, so far less than a JSON answer. Past either the answer is
    /// cut and says so.
    pub mcp_max_rows: u64,
    pub mcp_max_bytes: u64,
    /// Messages one JSON-RPC batch to `/mcp` may hold (each answered in memory).
    pub mcp_max_batch: usize,
    /// The largest message a Postgres client may send once logged in (a statement with its
    /// parameters); before login, at most 16 KiB.
    pub pg_max_message_size: usize,
    /// How long a logged-in Postgres client may send nothing before its connection is
    /// closed (`None`: forever), as Postgres' `idle_session_timeout`.
    pub pg_idle_timeout: Option<std::time::Duration>,
    /// Named prepared statements and portals one Postgres connection holds at once.
    pub pg_max_prepared: usize,
    /// Bytes of text and parameters those hold at once.
    pub pg_max_prepared_size: usize,
    /// The certificate chain and private key (PEM files) both doors serve TLS with; `None`:
    /// no TLS.
    pub tls: Option<TlsFiles>,
    /// The largest request body read whole (JSON: the API, Iceberg REST, function calls and
    /// webhooks); uploads stream and have `max_upload_size`.
    pub max_body_size: usize,
    /// Uploads (`basin --remote import`) received at once; each may take up to
    /// `max_upload_size` of `.basin/uploads`.
    pub max_uploads: usize,
    /// Uploads one writer (a token) sends at once, within `max_uploads`.
    pub max_uploads_per_writer: usize,
    /// Refused requests the audit log records one by one each minute; past it, they are
    /// counted and the count recorded once the minute ends.
    pub audit_refusals_per_minute: u64,
}

/// `[server] tls_cert` and `tls_key`, resolved against the lakehouse folder.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            max_connections: 256,
            reserved_connections: 4,
            max_connections_per_client: 64,
            max_queries_per_reader: 4,
            max_runs_per_writer: 2,
            handshake_timeout: std::time::Duration::from_secs(5),
            tcp_keepalive: Some(std::time::Duration::from_secs(60)),
            header_read_timeout: std::time::Duration::from_secs(10),
            request_timeout: Some(std::time::Duration::from_secs(600)),
            write_timeout: Some(std::time::Duration::from_secs(60)),
            max_upload_size: 10 << 30,
            json_max_rows: 100_000,
            json_max_bytes: 64 << 20,
            mcp_max_rows: 1000,
            mcp_max_bytes: 64 << 10,
            mcp_max_batch: 16,
            pg_max_message_size: 64 << 20,
            pg_idle_timeout: Some(std::time::Duration::from_secs(3600)),
            pg_max_prepared: 1000,
            pg_max_prepared_size: 16 << 20,
            tls: None,
            max_body_size: 2 << 20,
            max_uploads: 4,
            max_uploads_per_writer: 2,
            audit_refusals_per_minute: 30,
        }
    }
}

/// `[server]` as written, over the defaults; paths are relative to `dir`. `setting` names a
/// setting of the section in errors.
pub(super) fn resolve(
    w: &ServerSection,
    dir: &Path,
    setting: &dyn Fn(&str) -> String,
) -> Result<ServerSettings> {
    let mut server = ServerSettings::default();
    if let Some(hosts) = &w.allowed_hosts {
        server.allowed_hosts = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
    }
    if let Some(n) = w.max_connections {
        server.max_connections = n.max(1);
    }
    if let Some(n) = w.reserved_connections {
        server.reserved_connections = n;
    }
    if let Some(n) = w.max_connections_per_client {
        server.max_connections_per_client = n.max(1);
    }
    if let Some(n) = w.max_queries_per_reader {
        server.max_queries_per_reader = n.max(1);
    }
    if let Some(n) = w.max_runs_per_writer {
        server.max_runs_per_writer = n.max(1);
    }
    if let Some(v) = &w.handshake_timeout {
        server.handshake_timeout = v
            .limit(&setting("handshake_timeout"))?
            .unwrap_or(std::time::Duration::from_secs(3600));
    }
    if let Some(v) = &w.tcp_keepalive {
        server.tcp_keepalive = v.limit(&setting("tcp_keepalive"))?;
    }
    if let Some(v) = &w.header_read_timeout {
        server.header_read_timeout = v
            .limit(&setting("header_read_timeout"))?
            .unwrap_or(std::time::Duration::from_secs(3600));
    }
    if let Some(v) = &w.request_timeout {
        server.request_timeout = v.limit(&setting("request_timeout"))?;
    }
    if let Some(v) = &w.write_timeout {
        server.write_timeout = v.limit(&setting("write_timeout"))?;
    }
    if let Some(v) = &w.max_upload_size {
        server.max_upload_size = v.bytes(&setting("max_upload_size"))?;
    }
    if let Some(n) = w.json_max_rows {
        server.json_max_rows = n.max(1);
    }
    if let Some(v) = &w.json_max_bytes {
        server.json_max_bytes = v.bytes(&setting("json_max_bytes"))?;
    }
    if let Some(n) = w.mcp_max_batch {
        server.mcp_max_batch = n.max(1);
    }
    if let Some(n) = w.mcp_max_rows {
        server.mcp_max_rows = n.max(1);
    }
    if let Some(v) = &w.mcp_max_bytes {
        server.mcp_max_bytes = v.in_memory(&setting("mcp_max_bytes"), 1 << 10)? as u64;
    }
    if let Some(v) = &w.pg_max_message_size {
        // A message of less than 16 KiB could not carry a login.
        server.pg_max_message_size = v.in_memory(&setting("pg_max_message_size"), 16 << 10)?;
    }
    if let Some(v) = &w.pg_idle_timeout {
        server.pg_idle_timeout = v.limit(&setting("pg_idle_timeout"))?;
    }
    if let Some(n) = w.pg_max_prepared {
        server.pg_max_prepared = n.max(1);
    }
    if let Some(v) = &w.pg_max_prepared_size {
        server.pg_max_prepared_size = v.in_memory(&setting("pg_max_prepared_size"), 1 << 10)?;
    }
    if let Some(v) = &w.max_body_size {
        server.max_body_size = v.in_memory(&setting("max_body_size"), 1 << 10)?;
    }
    if let Some(n) = w.max_uploads {
        server.max_uploads = n.max(1);
    }
    if let Some(n) = w.max_uploads_per_writer {
        server.max_uploads_per_writer = n.max(1);
    }
    if let Some(n) = w.audit_refusals_per_minute {
        server.audit_refusals_per_minute = n;
    }
    server.tls = match (&w.tls_cert, &w.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: dir.join(cert),
            key: dir.join(key),
        }),
        (None, None) => None,
        _ => {
            return Err(Error::invalid(
                "[server]: tls_cert and tls_key go together (the certificate chain and its key)",
            )
            .with_hint("set both to PEM files, or neither to serve without TLS"));
        }
    };
    Ok(server)
}
