//! The messages of Basin's worker protocol (docs/protocol.md): JSON lines on a Unix socket,
//! with tables as Arrow IPC files in shared memory, never in the messages.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;

/// An Arrow IPC file in the invocation's folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableFile {
    pub path: PathBuf,
    pub format: String,
    pub rows: u64,
    pub bytes: u64,
}

/// Sent to the zygote (one line on its stdin) to start an invocation.
#[derive(Debug, Serialize)]
pub(crate) struct Fork<'a> {
    pub invocation: &'a str,
    pub socket: &'a std::path::Path,
    pub env: &'a BTreeMap<String, String>,
    pub sandbox: Sandbox,
    /// A program to exec instead of a Python function.
    pub exec: Option<&'a [String]>,
    /// Keep the child after its reply for the next invocation of the same function version
    /// (`[functions] reuse`): it waits on its connection for an [`Again`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reuse: bool,
}

/// The first line of a kept child's next invocation, sent on its connection (followed by
/// the secrets and the request, as for its first).
#[derive(Debug, Serialize)]
pub(crate) struct Again<'a> {
    pub invocation: &'a str,
    pub env: &'a BTreeMap<String, String>,
    pub workdir: &'a std::path::Path,
}

/// How the child confines itself (see python/basin/_sandbox.py).
#[derive(Debug, Serialize)]
pub(crate) struct Sandbox {
    pub internet: bool,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub workdir: PathBuf,
    /// The runtime's scratch folder, where invocation folders live: the one folder the
    /// worker itself may write (python/basin/_sandbox.py, `confine_worker`).
    pub scratch: PathBuf,
    /// Refuse to run user code when a wall is missing.
    pub strict: bool,
    /// Walls not to build (`[functions] disable_walls`).
    pub off: Vec<String>,
    pub limits: SandboxLimits,
}

/// rlimits of the invocation's processes.
#[derive(Debug, Serialize)]
pub(crate) struct SandboxLimits {
    /// Processes and threads, counted in the invocation's own user namespace.
    pub processes: u64,
    pub open_files: u64,
    /// The largest file it may write (its folder is in memory).
    pub file_size: u64,
    /// Steps of nice a child takes below Basin while it waits for its request (not an rlimit:
    /// it lowers its priority, and sets `RLIMIT_NICE` to 0).
    pub nice: u8,
}

/// What the zygote says on its stdout.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ZygoteEvent {
    Ready {
        #[allow(dead_code)]
        ready: u32,
        preloaded: Vec<String>,
        ms: f64,
    },
    Forked {
        forked: String,
        pid: u32,
        /// The init of the child's PID namespace (the `processes` wall).
        #[serde(default)]
        init: Option<u32>,
    },
    Exited {
        exited: u32,
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// A child forked ahead, waiting for its request: Basin moves it into a memory group now.
    Spare { spare: u32 },
}

/// The first line on every connection to the invocation's socket.
#[derive(Debug, Deserialize)]
pub(crate) struct Hello {
    pub invocation: String,
    pub stream: Opening,
}

/// Who connects: the forked child, once, before any user code runs; or a program's control
/// stream (docs/protocol.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Opening {
    Child,
    Control,
}

/// An output stream of an invocation's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Control,
    Stdout,
    Stderr,
}

/// The function's source, sent in the request: user code cannot read the user's folder.
#[derive(Debug, Serialize)]
pub(crate) struct FunctionSource<'a> {
    pub name: &'a str,
    pub file: &'a std::path::Path,
    pub source: &'a str,
}

/// Basin's one message on the control connection.
#[derive(Debug, Serialize)]
pub(crate) struct Request<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub protocol: u32,
    pub invocation: &'a str,
    pub function: FunctionSource<'a>,
    pub inputs: &'a BTreeMap<String, TableFile>,
    pub event: &'a serde_json::Value,
    /// Events for one handler call each, in this one invocation (instead of `event`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<&'a [BatchEvent]>,
    /// Each call's time limit in a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_timeout_ms: Option<u64>,
    pub params: &'a serde_json::Value,
    pub output: OutputLocation,
    pub deadline_ms: Option<i64>,
}

/// One event of a batch: its payload, the copy of the object it is about, and where its
/// handler call's table goes.
#[derive(Debug, Serialize)]
pub(crate) struct BatchEvent {
    pub event: serde_json::Value,
    pub object: Option<PathBuf>,
    /// The object as `basin import` reads it (CSV, JSON: the same inferred types), an
    /// Arrow IPC file for `context.read_table()`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_table: Option<PathBuf>,
    /// Why the object could not be read as a table; `context.read_table()` raises it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_table_error: Option<String>,
    pub output: OutputLocation,
}

#[derive(Debug, Serialize)]
pub(crate) struct OutputLocation {
    pub path: PathBuf,
    pub format: &'static str,
    /// Basin reads the returned table's batches only, never the file alone: the program may
    /// hand back batches of its inputs by reference (docs/protocol.md).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub by_reference: bool,
}

/// The worker's one message on the control connection.
#[derive(Debug, Deserialize)]
pub(crate) struct Reply {
    pub status: String,
    pub output: Option<ReplyOutput>,
    pub error: Option<UserError>,
    /// A batch's results, one per event, in order.
    #[serde(default)]
    pub batch: Option<Vec<ItemReply>>,
    #[serde(default)]
    pub usage: Option<ReplyUsage>,
    #[serde(default)]
    pub unconfined: Vec<String>,
}

impl Reply {
    /// A failed invocation, for a reply Basin would not read.
    pub(crate) fn refused(message: String) -> Self {
        Self {
            status: "error".into(),
            output: None,
            error: Some(UserError {
                kind: "ReplyTooLarge".into(),
                message,
                traceback: String::new(),
                file: None,
                line: None,
                hint: None,
            }),
            batch: None,
            usage: None,
            unconfined: Vec::new(),
        }
    }

    /// Whether a table the function returned lies, in part, in its inputs' files: those
    /// must stay as they are while Basin reads them.
    pub fn references_inputs(&self) -> bool {
        let refers = |o: &Option<ReplyOutput>| match o {
            Some(ReplyOutput::Table {
                batches: Some(pieces),
                ..
            }) => pieces.iter().any(|p| matches!(p, Piece::Input { .. })),
            _ => false,
        };
        refers(&self.output) || self.batch.iter().flatten().any(|i| refers(&i.output))
    }

    /// Whether Basin will read table files the function wrote.
    pub fn has_tables(&self) -> bool {
        let table = |o: &Option<ReplyOutput>| matches!(o, Some(ReplyOutput::Table { .. }));
        self.status == "ok"
            && (table(&self.output)
                || self
                    .batch
                    .iter()
                    .flatten()
                    .any(|item| item.status == "ok" && table(&item.output)))
    }
}

/// One handler call's result in a batch, with the output it printed.
#[derive(Debug, Deserialize)]
pub(crate) struct ItemReply {
    pub status: String,
    pub output: Option<ReplyOutput>,
    pub error: Option<UserError>,
    #[serde(default)]
    pub logs: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum ReplyOutput {
    Table {
        path: PathBuf,
        /// The table's batches in order, when some are handed back by reference into the
        /// inputs (`references.rs`); without it, every batch is in the file.
        #[serde(default)]
        batches: Option<Vec<Piece>>,
    },
    Json {
        value: serde_json::Value,
    },
    None,
}

/// Where one batch of a returned table lies: next in the output file, or in the inputs.
#[derive(Debug, Deserialize)]
#[serde(tag = "from", rename_all = "lowercase")]
pub(crate) enum Piece {
    /// The output file's next `count` batches.
    File {
        #[serde(default = "one")]
        count: usize,
    },
    Input {
        rows: usize,
        columns: Vec<ColumnRef>,
    },
}

fn one() -> usize {
    1
}

/// A column whose buffers lie in an input's file: its offset (in rows) and each buffer as
/// (byte offset in the file, length), the validity bitmap first (absent: no nulls).
#[derive(Debug, Deserialize)]
pub(crate) struct ColumnRef {
    pub input: String,
    pub offset: usize,
    pub buffers: Vec<Option<(usize, usize)>>,
}

/// An exception in user code, with the traceback from the user's frame down.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub traceback: String,
    pub file: Option<PathBuf>,
    pub line: Option<u32>,
    /// What to do about it, when the worker knows (an import of an undeclared package).
    #[serde(default)]
    pub hint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReplyUsage {
    #[serde(default)]
    pub cpu_ms: f64,
    #[serde(default)]
    pub max_rss_bytes: u64,
}
