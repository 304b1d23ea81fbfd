//! One invocation from its fork to its result: its memory group, the child forked from its
//! environment's worker, the request and the secrets on its socket, the watch for its
//! limits, and its end, after which nothing of it runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use basin_core::{Error, InvocationStatus, Result};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

use super::{Inner, Runtime, now_ms, search_path};
use crate::cgroup::Group;
use crate::invocation::{Invocation, Output, OutputSink, Target};
use crate::monitor::{Bounds, Stopped, end, folder_bytes, kernel_stopped, kill_group, watch};
use crate::options::{DEFAULT_TIMEOUT, RuntimeCounters};
use crate::protocol::{self, Fork, FunctionSource, OutputLocation, Reply, Request};
use crate::reply;
use crate::talk::{Talk, serve};
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
        ws: &Workspace,
        inv: &Invocation,
        memory_limit: u64,
        sink: OutputSink,
    ) -> Result<Run> {
        let options = &self.inner.options;
        let Started {
            listener,
            forked,
            exit_rx,
            guard,
            ungrouped,
            talk,
        } = self.start(ws, inv, memory_limit).await?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let server = tokio::spawn(serve(listener, ws.id.clone(), forked, talk, reply_tx, sink));
        let bounds = Bounds {
            memory: memory_limit,
            folder: &ws.dir,
            folder_base: folder_bytes(&ws.dir),
            options,
        };
        let mut exit_rx = Some(exit_rx);
        let watched = watch(forked, inv, bounds, reply_rx, &mut exit_rx).await;
        // Nothing of the invocation may run while an output Basin maps is read: with a PID
        // namespace everything is gone once `wait` returns, and a large output is mapped;
        // without one, a process that left the group could still write to it, so it is copied
        // instead. A small table is copied too, and an invocation that returned none is
        // killed the same way: Basin goes on without waiting, while the processes' exit (the
        // kernel freeing their memory) runs on another core.
        let tables = watched.0.as_ref().is_some_and(Reply::has_tables);
        let ending = end(forked, exit_rx.take());
        // Sized after the kill: a process that goes on writing after the reply cannot make
        // Basin copy a large file.
        let copied = tables
            && watched.0.as_ref().is_some_and(|r| r.batch.is_none())
            && std::fs::symlink_metadata(ws.output_path())
                .is_ok_and(|m| m.len() <= options.copy_outputs_below);
        let (ended, ending) = if tables && !copied {
            (ending.wait().await, None)
        } else {
            (false, Some(ending))
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
        let (reply, status, error) = watched;
        let (status, error) = stopped_by_kernel(&guard, inv, memory_limit, options, status, error);
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
        let run = self.outcome(ws, inv, &guard, (reply, status, error), ungrouped, safe);
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
    async fn start(&self, ws: &Workspace, inv: &Invocation, memory_limit: u64) -> Result<Started> {
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
                vec![ws.dir.clone()],
                workdir.clone(),
            ),
            exec: exec.as_deref(),
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
        };
        // Limited before the secrets are sent (`serve`), so before any of the function's code
        // runs.
        let grouped = self.memory_group(&zygote, pid, inv, memory_limit).await?;
        let ungrouped = grouped.as_ref().err().cloned();
        guard.group = grouped.unwrap_or(None);
        let request = request(ws, inv)?;
        Ok(Started {
            listener,
            forked,
            exit_rx,
            guard,
            ungrouped,
            talk: Talk {
                request,
                secrets,
                program: exec.is_some(),
                max_reply: options.max_reply_size,
                counters: options.counters.clone(),
            },
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
                    self.inner.pool.note(ws.bytes_out());
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

/// An invocation's child, forked and limited, and what it is sent once it connects.
struct Started {
    listener: UnixListener,
    forked: Forked,
    exit_rx: oneshot::Receiver<Exit>,
    guard: Ending,
    /// Why it runs without a memory group, when a best-effort runtime runs it anyway.
    ungrouped: Option<String>,
    talk: Talk,
}

/// The child's environment variables: nothing of Basin's own.
fn child_env(inv: &Invocation, workdir: &Path) -> BTreeMap<String, String> {
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
fn request(ws: &Workspace, inv: &Invocation) -> Result<Vec<u8>> {
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

/// Ends an invocation's process group when dropped.
struct Ending {
    pid: u32,
    zygote: Arc<Zygote>,
    inner: Arc<Inner>,
    /// Its memory group (the `memory` wall), removed after the kill.
    group: Option<Group>,
}

impl Ending {
    /// The kernel's count of the invocation's peak memory (0 without a memory group).
    fn peak(&self) -> u64 {
        self.group.as_ref().map_or(0, Group::peak)
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        kill_group(self.pid);
        self.inner
            .running
            .lock()
            .expect("running")
            .remove(&self.pid);
        self.zygote.end();
        // The worker's keep-alive starts now.
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
