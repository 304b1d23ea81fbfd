//! One invocation from its fork to its result: its memory group, the child forked from its
//! environment's worker, the request and the secrets on its socket, the watch for its
//! limits, and its end, after which nothing of it runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use basin_core::{Error, InvocationStatus, Result};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use super::{Inner, Runtime, now_ms, search_path};
use crate::cgroup::Group;
use crate::invocation::{Invocation, Output, OutputSink, Target};
use crate::kept::{self, Keeping, Lease};
use crate::monitor::{Bounds, Stopped, end, folder_bytes, kernel_stopped, kill_group, watch};
use crate::options::{DEFAULT_TIMEOUT, RuntimeCounters};
use crate::protocol::{self, Fork, FunctionSource, OutputLocation, Reply, Request};
use crate::reply;
use crate::scratch::Folder;
use crate::talk::{Talk, again, serve};
use crate::walls::{Isolation, refuse};
use crate::workspace::Workspace;
use crate::zygote::{Exit, Forked, Zygote};

impl Runtime {
    /// The memory group of the invocation whose child is `pid`, limited to `limit`, when
    /// the `memory` wall holds: the one made and entered while the child waited
    /// (`Zygote::take_group`; none if the child has ended since). Without one, a runtime
    /// set to strict refuses to run, and a best-effort one runs and says so (`Err` of the
    /// `Ok`: the note for the record's unconfined walls). Once the child is in its group,
    /// failing to limit it is an error in every mode.
    async fn memory_group(
        &self,
        zygote: &Zygote,
        pid: u32,
        inv: &Invocation,
        limit: u64,
    ) -> Result<std::result::Result<Option<Group>, String>> {
        if self.inner.walls.cgroups.is_none() {
            return Ok(Ok(None));
        }
        let Some(ahead) = zygote.take_group(pid) else {
            return Ok(Ok(None)); // ended already: `watch` says how
        };
        let made = ahead
            .await
            .unwrap_or_else(|_| Err("the worker went away".to_string()));
        match made {
            Ok(mut group) => {
                group.set_limit(limit).map_err(|why| {
                    Error::internal(format!("function `{}`: {why}", inv.function))
                        .with_hint("see `basin doctor` for the memory wall; invoke again")
                })?;
                Ok(Ok(Some(group)))
            }
            Err(why)
                if self.inner.walls.isolation == Isolation::Strict && self.inner.walls.chosen =>
            {
                refuse(&inv.function, vec![format!("memory: {why}")]).map(|()| Ok(None))
            }
            Err(why) => {
                tracing::warn!(function = %inv.function, "no memory group: {why}");
                Ok(Err(format!("memory: {why}")))
            }
        }
    }

    pub(super) async fn run(
        &self,
        ws: &mut Workspace,
        inv: &Invocation,
        memory_limit: u64,
        sink: OutputSink,
    ) -> Result<Run> {
        let options = &self.inner.options;
        // A kept child of the same function version, or a fresh one (kept after, if it may be).
        let key = self.reusable(inv).then(|| kept::key(inv, memory_limit));
        let started = match key.as_ref().and_then(|k| self.inner.kept.take(k)) {
            Some(lease) => self.start_again(ws, inv, lease, key.clone().unwrap_or_default())?,
            None => self.start(ws, inv, memory_limit, key).await?,
        };
        let Started {
            door,
            forked,
            mut exit_rx,
            mut guard,
            ungrouped,
            talk,
            keeping,
        } = started;
        let ws: &Workspace = ws;
        let (reply_tx, reply_rx) = oneshot::channel();
        let server = match door {
            Door::Listen(listener) => {
                tokio::spawn(serve(listener, ws.id.clone(), forked, talk, reply_tx, sink))
            }
            Door::Kept(stream, message) => {
                tokio::spawn(again(stream, message, talk, reply_tx, sink))
            }
        };
        let bounds = Bounds {
            memory: memory_limit,
            folder: &ws.dir,
            folder_base: folder_bytes(&ws.dir),
            options,
        };
        let (reply, status, error) = watch(forked, inv, bounds, reply_rx, &mut exit_rx).await;
        let (status, error) = stopped_by_kernel(&guard, inv, memory_limit, options, status, error);
        let tables = reply.as_ref().is_some_and(Reply::has_tables);
        let outcome = (reply.as_ref(), status, error.is_some());
        let mut keeping = keeping.filter(|k| may_keep(k, forked, outcome, ws, options));
        // Nothing of the invocation may run while an output Basin maps is read: with a PID
        // namespace everything is gone once `wait` returns, and a large output is mapped;
        // without one, a process that left the group could still write to it, so it is copied
        // instead. A small table is copied too, and an invocation that returned none is
        // killed the same way: Basin goes on without waiting, while the processes' exit (the
        // kernel freeing their memory) runs on another core.
        let ending = keeping.is_none().then(|| end(forked, exit_rx.take()));
        // Sized after the kill: a process that goes on writing after the reply cannot make
        // Basin copy a large file. A table that lies in the inputs is as large as they are.
        let copied = tables
            && reply
                .as_ref()
                .is_some_and(|r| r.batch.is_none() && !r.references_inputs())
            && std::fs::symlink_metadata(ws.output_path())
                .is_ok_and(|m| m.len() <= options.copy_outputs_below);
        let (ended, mut ending) = match ending {
            Some(ending) if tables && !copied => (ending.wait().await, None),
            ending => (false, ending),
        };
        // Output lines still in flight drain once the sockets close; a connection that never
        // came (the child died first) must not keep the listener waiting.
        let abort = server.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .is_err()
        {
            abort.abort();
        }
        // The child's connection comes back once its reply was read whole; without it the
        // child cannot be sent another request, and ends now.
        let stream = keeping.as_mut().and_then(|k| k.stream.try_recv().ok());
        if keeping.is_some() && stream.is_none() {
            keeping = None;
            ending = Some(end(forked, exit_rx.take()));
        }
        // Nothing of the invocation runs any more (its PID namespace is gone): its input files,
        // and its output file unless mapped as the result, can go back to the pool.
        let namespaced = self.inner.walls.holds("processes")
            && !reply
                .as_ref()
                .is_some_and(|r| r.unconfined.iter().any(|m| m.starts_with("processes:")));
        let safe = ended && namespaced;
        if safe {
            let mut back = ws.give_back.lock().expect("give_back");
            back.extend(ws.inputs.values().map(|t| t.path.clone()));
            if !tables {
                back.push(ws.output_path());
            }
        }
        let run = self.outcome(
            ws,
            inv,
            &guard,
            (reply, status, error),
            ungrouped.clone(),
            safe,
        );
        if let (Some(keeping), Some(stream)) = (keeping, stream) {
            guard.zygote.forget(&ws.id);
            guard.keep = true;
            let child = (forked, guard.group.take());
            let (key, lease) = Lease::new(guard.zygote.clone(), child, keeping, stream, ungrouped);
            self.inner.kept.put(key, lease);
        }
        // Not waited for: its files go back to the pool once every process has ended, as
        // above (a table's file stays: the caller may read it, `Finished::output_file`).
        if let Some(ending) = ending
            && namespaced
        {
            let files = ws.inputs.values().map(|t| t.path.clone());
            let output = (ws.batch.is_empty() && !tables).then(|| ws.output_path());
            self.inner
                .pool
                .give_back_after(files.chain(output), ending.wait());
        }
        Ok(run)
    }

    /// Forks the invocation's child and limits it, ready to be sent its request: the socket
    /// it connects to, the program it runs (staged in its working directory), its
    /// environment and sandbox, its memory group, and the request and secrets for `serve`.
    async fn start(
        &self,
        ws: &mut Workspace,
        inv: &Invocation,
        memory_limit: u64,
        key: Option<String>,
    ) -> Result<Started> {
        // A child that may be kept writes in a folder of its own, into which this invocation's
        // folder moves, and the next invocations' it serves.
        let (keeping, keep_tx) = match key {
            Some(key) => {
                let dir = self.inner.scratch.join(kept::folder_name());
                let folder = Arc::new(Folder::create(dir)?);
                ws.relocate(folder.clone())?;
                let (tx, rx) = oneshot::channel();
                let keeping = Keeping {
                    key,
                    stream: rx,
                    folder,
                    uses: 0,
                };
                (Some(keeping), Some(tx))
            }
            None => (None, None),
        };
        RuntimeCounters::count(&self.inner.options.counters.warm_fresh);
        let listener = UnixListener::bind(ws.socket()).map_err(|e| {
            Error::io_with(format!("cannot listen on {}", ws.socket().display()), e)
        })?;
        let workdir = ws.workdir();
        let exec = match &inv.target {
            Target::Program { argv } => Some(stage_program(argv, &workdir)?),
            Target::Python { .. } => None,
        };
        let options = &self.inner.options;
        let env = child_env(inv, &workdir);
        // Secrets never pass through the worker: a spare forked after this invocation would
        // hold a copy of whatever the worker read. They go on the child's own connection
        // (`talk::serve`).
        let secrets = serde_json::to_vec(&inv.secrets)
            .map_err(|e| Error::internal(format!("secrets: {e}")))?;
        let fork = Fork {
            invocation: &ws.id,
            socket: &ws.socket(),
            env: &env,
            sandbox: self.sandbox(
                &inv.env,
                inv.limits.internet,
                vec![
                    keeping
                        .as_ref()
                        .map_or(ws.dir.clone(), |k| k.folder.path().into()),
                ],
                workdir.clone(),
            ),
            exec: exec.as_deref(),
            reuse: keeping.is_some(),
        };
        if exec.is_none() && ws.batch.is_empty() {
            // The worker writes its table over this file's allocated pages (python/basin/_worker.py).
            self.inner.pool.take_fresh(&ws.output_path());
        }
        let (zygote, (forked, exit_rx)) = self.fork(inv, &fork).await?;
        let pid = forked.pid;
        zygote.begin();
        self.inner.running.lock().expect("running").insert(pid);
        // However this ends (even if the caller drops this future), nothing the invocation
        // started outlives it.
        let mut guard = Ending {
            pid,
            zygote: zygote.clone(),
            inner: self.inner.clone(),
            group: None,
            keep: false,
        };
        // Limited before the secrets are sent (`serve`), so before any of the function's code
        // runs.
        let grouped = self.memory_group(&zygote, pid, inv, memory_limit).await?;
        let ungrouped = grouped.as_ref().err().cloned();
        guard.group = grouped.unwrap_or(None);
        let request = request(ws, inv)?;
        Ok(Started {
            door: Door::Listen(listener),
            forked,
            exit_rx: Some(exit_rx),
            guard,
            ungrouped,
            talk: Talk {
                request,
                secrets,
                program: exec.is_some(),
                max_reply: options.max_reply_size,
                counters: options.counters.clone(),
                keep: keep_tx,
            },
            keeping,
        })
    }

    /// Forks the child from its environment's worker; a worker that died (killed, or out of
    /// memory itself) is replaced once.
    async fn fork(
        &self,
        inv: &Invocation,
        fork: &Fork<'_>,
    ) -> Result<(Arc<Zygote>, (Forked, oneshot::Receiver<Exit>))> {
        let internet = inv.limits.internet;
        let zygote = self.zygote(&inv.env, &inv.preload, internet, false).await?;
        match zygote.fork(fork).await {
            Ok(forked) => Ok((zygote, forked)),
            Err(_) => {
                let zygote = self.zygote(&inv.env, &inv.preload, internet, true).await?;
                let forked = zygote.fork(fork).await?;
                Ok((zygote, forked))
            }
        }
    }

    /// The run's record from what the watch saw: its status, usage and walls, and its
    /// result (the function's output, or why there is none).
    fn outcome(
        &self,
        ws: &Workspace,
        inv: &Invocation,
        guard: &Ending,
        (reply, status, error): (Option<Reply>, InvocationStatus, Option<Stopped>),
        ungrouped: Option<String>,
        safe: bool,
    ) -> Run {
        let options = &self.inner.options;
        let usage = reply.as_ref().and_then(|r| r.usage.as_ref());
        let cpu_ms = usage.map_or(0.0, |u| u.cpu_ms);
        let peak = usage.map_or(0, |u| u.max_rss_bytes);
        let mut run = Run {
            status,
            cpu_ms,
            peak_memory: peak,
            unconfined: reply
                .as_ref()
                .map(|r| r.unconfined.clone())
                .unwrap_or_default()
                .into_iter()
                .chain(ungrouped)
                .collect(),
            result: Ok(Output::None),
        };
        run.result = match (error, reply) {
            (Some(sample), _) => {
                let sample = Stopped {
                    peak_memory: sample.peak_memory.max(guard.peak()),
                    ..sample
                };
                run.peak_memory = run.peak_memory.max(sample.peak_memory);
                run.cpu_ms = run.cpu_ms.max(sample.cpu_ms);
                Err(sample.error)
            }
            (None, Some(reply)) if reply.status == "refused" => {
                RuntimeCounters::count(&options.counters.refused);
                refuse(&inv.function, reply.unconfined.clone()).map(|()| Output::None)
            }
            (None, Some(reply)) => {
                let output = reply::output(ws, inv, reply, safe);
                if matches!(output, Ok(Output::Table { .. })) {
                    self.inner
                        .pool
                        .note(ws.bytes_out().saturating_sub(ws.bytes_by_reference()));
                    let counter = &options.counters.handoff_by_reference_bytes;
                    counter.fetch_add(ws.bytes_by_reference(), Ordering::Relaxed);
                }
                output
            }
            (None, None) => Err(Error::internal(format!(
                "function `{}` ended without a result",
                inv.function
            ))),
        };
        run
    }
}

/// An invocation's child, forked and limited (or kept from an earlier invocation), and what
/// it is sent once it connects.
pub(super) struct Started {
    pub(super) door: Door,
    pub(super) forked: Forked,
    pub(super) exit_rx: Option<oneshot::Receiver<Exit>>,
    pub(super) guard: Ending,
    /// Why it runs without a memory group, when a best-effort runtime runs it anyway.
    pub(super) ungrouped: Option<String>,
    pub(super) talk: Talk,
    /// The child may be kept for the next invocation of the same key.
    pub(super) keeping: Option<Keeping>,
}

/// Where the invocation's child is reached.
pub(super) enum Door {
    /// A fresh child connects to the invocation's socket.
    Listen(UnixListener),
    /// A kept child waits on its connection for this message (`protocol::Again`, the
    /// secrets, the request).
    Kept(UnixStream, Vec<u8>),
}

/// Whether the child may be kept for the next invocation: it answered (a result or the
/// function's own error) within its limits, in a PID namespace of its own (it ends its other
/// processes itself), under `max_uses`, and handled tables small enough to copy (a table
/// mapped, or given back to the pool, needs every process of the invocation gone).
fn may_keep(
    keeping: &Keeping,
    forked: Forked,
    (reply, status, stopped): (Option<&Reply>, InvocationStatus, bool),
    ws: &Workspace,
    options: &crate::options::RuntimeOptions,
) -> bool {
    // (The output file may be one from the pool, written over only when a table is.)
    let tables = reply.is_some_and(Reply::has_tables);
    let table_bytes = if tables { ws.output_bytes() } else { 0 };
    forked.init.is_some()
        && !stopped
        && matches!(status, InvocationStatus::Ok | InvocationStatus::Error)
        && reply.is_some_and(|r| r.status != "refused")
        && keeping.uses + 1 < options.max_uses
        && table_bytes <= options.copy_outputs_below
        && ws.rows_and_bytes_in().1 <= options.copy_outputs_below
}

/// The child's environment variables: nothing of Basin's own.
pub(super) fn child_env(inv: &Invocation, workdir: &Path) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("PATH".into(), search_path(&inv.env)),
        ("HOME".into(), workdir.display().to_string()),
        ("TMPDIR".into(), workdir.display().to_string()),
        ("LANG".into(), "C.UTF-8".into()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("BASIN_FUNCTION".into(), inv.function.clone()),
    ])
}

/// The request line for the child (docs/protocol.md).
pub(super) fn request(ws: &Workspace, inv: &Invocation) -> Result<Vec<u8>> {
    let deadline_ms =
        Some(now_ms() + inv.limits.timeout.unwrap_or(DEFAULT_TIMEOUT).as_millis() as i64);
    let (name, file, source): (&str, &Path, &str) = match &inv.target {
        Target::Python { file, name, source } => (name, file, source),
        Target::Program { argv } => (&inv.function, Path::new(&argv[0]), ""),
    };
    serde_json::to_vec(&Request {
        kind: "request",
        protocol: protocol::VERSION,
        invocation: &ws.id,
        function: FunctionSource { name, file, source },
        inputs: &ws.inputs,
        event: &inv.event,
        batch: (!ws.batch.is_empty()).then_some(&ws.batch[..]),
        item_timeout_ms: inv
            .limits
            .per_event
            .filter(|_| !ws.batch.is_empty())
            .map(|d| d.as_millis() as u64),
        params: &inv.params,
        output: OutputLocation {
            path: ws.output_path(),
            format: crate::workspace::FORMAT,
            by_reference: ws.by_reference,
        },
        deadline_ms,
    })
    .map_err(|e| Error::internal(format!("request: {e}")))
}

/// The kernel stopped one of its processes at the limit (unless Basin's sampling did first,
/// with its own count): the invocation fails, even if it caught that.
fn stopped_by_kernel(
    guard: &Ending,
    inv: &Invocation,
    memory_limit: u64,
    options: &crate::options::RuntimeOptions,
    status: InvocationStatus,
    error: Option<Stopped>,
) -> (InvocationStatus, Option<Stopped>) {
    match &guard.group {
        Some(group) if status != InvocationStatus::Memory && group.stopped_at_limit() => {
            // Its peak is the group's, taken in `outcome`.
            let stopped = Stopped {
                error: kernel_stopped(inv, memory_limit, options),
                peak_memory: 0,
                cpu_ms: error.as_ref().map_or(0.0, |e| e.cpu_ms),
            };
            (InvocationStatus::Memory, Some(stopped))
        }
        _ => (status, error),
    }
}

/// Ends an invocation's process group when dropped, unless its child is kept.
pub(super) struct Ending {
    pub(super) pid: u32,
    pub(super) zygote: Arc<Zygote>,
    pub(super) inner: Arc<Inner>,
    /// Its memory group (the `memory` wall), removed after the kill.
    pub(super) group: Option<Group>,
    /// The child was kept for the next invocation (its lease ends it).
    pub(super) keep: bool,
}

impl Ending {
    /// The kernel's count of the invocation's peak memory (0 without a memory group).
    fn peak(&self) -> u64 {
        self.group.as_ref().map_or(0, Group::peak)
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.inner
            .running
            .lock()
            .expect("running")
            .remove(&self.pid);
        if !self.keep {
            kill_group(self.pid);
            self.zygote.end();
        }
        // The worker's keep-alive (or the kept child's) starts now.
        self.inner.reaper.notify_one();
    }
}

pub(super) struct Run {
    pub(super) status: InvocationStatus,
    pub(super) cpu_ms: f64,
    pub(super) peak_memory: u64,
    pub(super) unconfined: Vec<String>,
    pub(super) result: Result<Output>,
}

/// Copies a program into the invocation's working directory (the only place the child may
/// read it from) and returns its argv there.
fn stage_program(argv: &[String], workdir: &Path) -> Result<Vec<String>> {
    let source = Path::new(&argv[0]);
    let name = source
        .file_name()
        .ok_or_else(|| Error::invalid(format!("`{}` is not a program file", argv[0])))?;
    let staged = workdir.join(name);
    std::fs::copy(source, &staged).map_err(|e| {
        Error::not_found(format!("cannot read program {}: {e}", source.display()))
            .with_hint("give the path of an executable file that speaks docs/protocol.md")
    })?;
    let mut argv = argv.to_vec();
    argv[0] = staged.display().to_string();
    Ok(argv)
}
