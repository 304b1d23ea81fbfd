//! Runs functions: one warm fork server per environment, one fresh confined child per
//! invocation, limits enforced from outside the child, and a metering record for each.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use basin_catalog::{Error, InvocationKind, InvocationRecord, InvocationStatus, Result};
use tokio::net::UnixListener;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::cgroup::Group;
use crate::env::{Env, EnvCache, EnvSpec};
pub use crate::invocation::{Finished, Invocation, Output, OutputSink, Target};
use crate::monitor::{
    Bounds, Stopped, Talk, end, folder_bytes, kernel_stopped, kill_group, serve, watch,
};
use crate::options::{DEFAULT_MEMORY, DEFAULT_TIMEOUT, RuntimeCounters, RuntimeOptions};
use crate::pool::Pool;
use crate::protocol::{
    self, Fork, FunctionSource, OutputLocation, Reply, Request, Sandbox, SandboxLimits,
};
use crate::reply;
use crate::walls::{Isolation, Walls, refuse};
use crate::workspace::Workspace;
use crate::zygote::Zygote;

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Zygote>>>>;

struct Inner {
    envs: EnvCache,
    scratch: PathBuf,
    /// Locked while this runtime lives: a runtime starting later removes `scratch` if a
    /// kill left it behind (`scratch::sweep`).
    _owner: std::fs::File,
    options: RuntimeOptions,
    /// The walls this machine builds, probed once.
    walls: Walls,
    zygotes: Mutex<HashMap<String, Slot>>,
    global: Arc<Semaphore>,
    per_function: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Process groups of running invocations, for `kill_all`.
    running: Mutex<HashSet<u32>>,
    /// Wakes the keep-alive reaper: a worker started, or the runtime is going away.
    reaper: Arc<Notify>,
    /// Shared memory kept allocated for the tables handed to and from functions.
    pool: Arc<Pool>,
}

impl Inner {
    /// The environments' worker slots, without holding the map's lock.
    fn slots(&self) -> Vec<Slot> {
        self.zygotes
            .lock()
            .expect("zygotes")
            .values()
            .cloned()
            .collect()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reaper.notify_one();
        let _ = std::fs::remove_dir_all(&self.scratch);
        if let Some(cgroups) = &self.walls.cgroups {
            cgroups.remove_own();
        }
    }
}

/// The function runtime. Cheap to clone; workers live as long as some clone does (and at
/// most the keep-alive past their last invocation).
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("scratch", &self.inner.scratch)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Runtime {
    /// Must be called inside a Tokio runtime (it starts the keep-alive reaper).
    pub fn new(envs: EnvCache, options: RuntimeOptions) -> Result<Self> {
        let base = options.scratch.clone().unwrap_or_else(|| {
            let shm = Path::new("/dev/shm");
            if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            }
        });
        crate::scratch::sweep(&base);
        let (scratch, owner) = crate::scratch::claim(&base)?;
        let walls = Walls::probe(options.isolation, &options.disable_walls);
        let pool = Arc::new(Pool::new(
            scratch.join("pool"),
            options.handoff_pool,
            options.counters.clone(),
        ));
        let inner = Arc::new(Inner {
            pool,
            envs,
            scratch,
            _owner: owner,
            walls,
            global: Arc::new(Semaphore::new(options.max_concurrency.max(1))),
            options,
            zygotes: Mutex::new(HashMap::new()),
            per_function: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
            reaper: Arc::new(Notify::new()),
        });
        tokio::spawn(reap_idle(Arc::downgrade(&inner), inner.reaper.clone()));
        Ok(Self { inner })
    }

    pub fn envs(&self) -> &EnvCache {
        &self.inner.envs
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// The walls functions run inside, as probed when the runtime started.
    pub fn walls(&self) -> &Walls {
        &self.inner.walls
    }

    /// The environment for `spec`, built on first use.
    pub async fn environment(&self, spec: &EnvSpec) -> Result<Env> {
        self.inner.envs.resolve(spec).await
    }

    /// A new invocation folder, for its inputs.
    pub fn workspace(&self) -> Result<Workspace> {
        Workspace::create(&self.inner.scratch, Some(self.inner.pool.clone()))
    }

    /// Process ids of the warm workers (fork servers) alive now.
    pub async fn workers(&self) -> Vec<u32> {
        let slots = self.inner.slots();
        let mut pids = Vec::new();
        for slot in slots {
            if let Some(z) = slot.lock().await.as_ref() {
                pids.push(z.pid);
            }
        }
        pids
    }

    /// Kills every running invocation (with its process group) and every worker: for Ctrl-C.
    pub async fn kill_all(&self) {
        let groups: Vec<u32> = self
            .inner
            .running
            .lock()
            .expect("running")
            .iter()
            .copied()
            .collect();
        for pgid in groups {
            kill_group(pgid);
        }
        let slots: Vec<Slot> = self
            .inner
            .zygotes
            .lock()
            .expect("zygotes")
            .drain()
            .map(|(_, s)| s)
            .collect();
        for slot in slots {
            // A worker still starting holds its slot; it dies with Basin (PDEATHSIG) anyway.
            if let Ok(mut slot) = slot.try_lock() {
                slot.take();
            }
        }
    }

    /// The walls of an invocation in `env` that writes to `write` (python/basin/_sandbox.py).
    fn sandbox(&self, env: &Env, internet: bool, write: Vec<PathBuf>, workdir: PathBuf) -> Sandbox {
        let options = &self.inner.options;
        Sandbox {
            internet,
            read: vec![env.path.clone()],
            write,
            workdir,
            scratch: self.inner.scratch.clone(),
            strict: self.inner.walls.isolation == crate::walls::Isolation::Strict,
            off: options.disable_walls.clone(),
            limits: SandboxLimits {
                processes: options.max_processes,
                open_files: options.max_open_files,
                file_size: options.max_folder_size,
            },
        }
    }

    /// The slot of `env`'s worker for functions with or without the `internet`: empty until
    /// a worker starts, and locked while one does. The two are apart because the worker
    /// without it has no network itself (python/basin/_sandbox.py, `confine_worker`), and the
    /// packages' import code runs there.
    fn slot(&self, env: &Env, internet: bool) -> Slot {
        let key = if internet {
            format!("{}+internet", env.hash)
        } else {
            env.hash.clone()
        };
        self.inner
            .zygotes
            .lock()
            .expect("zygotes")
            .entry(key)
            .or_default()
            .clone()
    }

    /// Starts a worker for `env`; its spare children build the walls of a function with or
    /// without the `internet` ahead. The caller holds the slot's lock and puts the worker in
    /// it.
    async fn start_worker(
        &self,
        env: &Env,
        preload: &[String],
        internet: bool,
    ) -> Result<Arc<Zygote>> {
        let ahead = self.sandbox(env, internet, Vec::new(), PathBuf::new());
        let z = Zygote::start(&env.python, preload, &search_path(env), &ahead).await?;
        Ok(Arc::new(z))
    }

    async fn zygote(
        &self,
        env: &Env,
        preload: &[String],
        internet: bool,
        fresh: bool,
    ) -> Result<Arc<Zygote>> {
        let slot = self.slot(env, internet);
        let mut slot = slot.lock().await;
        if fresh {
            slot.take();
        }
        if let Some(z) = slot.as_ref() {
            return Ok(z.clone());
        }
        let z = self.start_worker(env, preload, internet).await?;
        *slot = Some(z.clone());
        self.inner.reaper.notify_one();
        Ok(z)
    }

    /// Starts `env`'s worker (Python's start and the `preload` imports, a few hundred
    /// milliseconds with pyarrow) in the background, so that it overlaps with whatever the
    /// caller does next: scanning the inputs. The invocation that follows waits for it
    /// instead of starting its own. A worker already there, or starting, is left alone; a
    /// start that fails here is tried again (and reported) by that invocation. `internet`:
    /// the worker of functions with the internet, or without.
    pub fn warm(&self, env: &Env, preload: &[String], internet: bool) {
        // Locked here, before the task runs: an invocation that asks first still waits for it.
        let Ok(mut slot) = self.slot(env, internet).try_lock_owned() else {
            return;
        };
        if slot.is_some() {
            return;
        }
        let (runtime, env, preload) = (self.clone(), env.clone(), preload.to_vec());
        tokio::spawn(async move {
            match runtime.start_worker(&env, &preload, internet).await {
                Ok(z) => {
                    *slot = Some(z);
                    runtime.inner.reaper.notify_one();
                }
                Err(e) => tracing::debug!(env = %env.hash, "worker not started ahead: {e}"),
            }
        });
    }

    fn permit_for(&self, function: &str, limit: Option<usize>) -> Arc<Semaphore> {
        let size = limit.unwrap_or(self.inner.options.max_concurrency).max(1);
        self.inner
            .per_function
            .lock()
            .expect("per-function limits")
            .entry(function.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(size)))
            .clone()
    }

    /// Runs `invocation` with the inputs already written into `workspace`, streaming its
    /// output lines to `sink`. Never fails as a whole: errors are in `Finished::result`.
    pub async fn invoke(
        &self,
        workspace: Workspace,
        invocation: Invocation,
        sink: OutputSink,
    ) -> Finished {
        let function_permit = self.permit_for(&invocation.function, invocation.concurrency);
        let _function = function_permit.acquire_owned().await.expect("never closed");
        let _global = self
            .inner
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let started_at_ms = now_ms();
        let clock = Instant::now();
        let (rows_in, bytes_in) = workspace.rows_and_bytes_in();
        let memory_limit = invocation.limits.memory_bytes.unwrap_or(DEFAULT_MEMORY);
        let mut record = InvocationRecord {
            id: workspace.id.clone(),
            function: invocation.function.clone(),
            env_hash: invocation.env.hash.clone(),
            started_at_ms,
            duration_ms: 0.0,
            cpu_ms: 0.0,
            peak_memory_bytes: 0,
            memory_limit_bytes: memory_limit,
            rows_in,
            bytes_in,
            rows_out: 0,
            bytes_out: 0,
            status: InvocationStatus::Ok,
            error: None,
            kind: InvocationKind::Function,
            bytes_scanned: 0,
        };
        let ran = match self.inner.walls.check(&invocation.function) {
            Ok(()) => self.run(&workspace, &invocation, memory_limit, sink).await,
            Err(e) => {
                RuntimeCounters::count(&self.inner.options.counters.refused);
                Err(e)
            }
        };
        record.duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
        let (result, unconfined) = match ran {
            Ok(run) => {
                record.cpu_ms = run.cpu_ms;
                record.peak_memory_bytes = run.peak_memory;
                if let Ok(output) = &run.result {
                    record.rows_out = output.rows();
                    record.bytes_out = workspace.bytes_out();
                }
                record.status = run.status;
                (run.result, run.unconfined)
            }
            Err(e) => (Err(e), Vec::new()),
        };
        if let Err(e) = &result {
            if record.status == InvocationStatus::Ok {
                record.status = InvocationStatus::Error;
            }
            record.error = Some(e.message.lines().next().unwrap_or_default().to_string());
        }
        Finished {
            record,
            result,
            unconfined,
            workspace,
        }
    }

    /// The invocation's memory group, when the `memory` wall holds; a strict runtime refuses
    /// to run without one.
    fn memory_group(&self, ws: &Workspace, inv: &Invocation, limit: u64) -> Result<Option<Group>> {
        let Some(cgroups) = &self.inner.walls.cgroups else {
            return Ok(None);
        };
        match cgroups.create(&ws.id, limit) {
            Ok(group) => Ok(Some(group)),
            Err(why) if self.inner.walls.isolation == Isolation::Strict => {
                refuse(&inv.function, vec![format!("memory: {why}")]).map(|()| None)
            }
            Err(why) => {
                tracing::warn!(function = %inv.function, "no memory group: {why}");
                Ok(None)
            }
        }
    }

    async fn run(
        &self,
        ws: &Workspace,
        inv: &Invocation,
        memory_limit: u64,
        sink: OutputSink,
    ) -> Result<Run> {
        let listener = UnixListener::bind(ws.socket())
            .map_err(|e| Error::io(format!("cannot listen on {}: {e}", ws.socket().display())))?;
        let workdir = ws.workdir();
        let exec = match &inv.target {
            Target::Program { argv } => Some(stage_program(argv, &workdir)?),
            Target::Python { .. } => None,
        };
        let options = &self.inner.options;
        let env: BTreeMap<String, String> = BTreeMap::from([
            ("PATH".into(), search_path(&inv.env)),
            ("HOME".into(), workdir.display().to_string()),
            ("TMPDIR".into(), workdir.display().to_string()),
            ("LANG".into(), "C.UTF-8".into()),
            ("PYTHONUNBUFFERED".into(), "1".into()),
            ("BASIN_FUNCTION".into(), inv.function.clone()),
        ]);
        // Secrets never pass through the worker: a spare forked after this invocation would
        // hold a copy of whatever the worker read. They go on the invocation's own stdout
        // stream (`monitor::serve`).
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
        let group = self.memory_group(ws, inv, memory_limit)?;
        let internet = inv.limits.internet;
        let zygote = self.zygote(&inv.env, &inv.preload, internet, false).await?;
        let (zygote, (forked, exit_rx)) = match zygote.fork(&fork).await {
            Ok(forked) => (zygote, forked),
            // A worker that died (killed, or out of memory itself) is replaced once.
            Err(_) => {
                let zygote = self.zygote(&inv.env, &inv.preload, internet, true).await?;
                let forked = zygote.fork(&fork).await?;
                (zygote, forked)
            }
        };
        let pid = forked.pid;
        zygote.begin();
        self.inner.running.lock().expect("running").insert(pid);
        // However this ends (even if the caller drops this future), nothing the invocation
        // started outlives it.
        let guard = Ending {
            pid,
            zygote: zygote.clone(),
            inner: self.inner.clone(),
            group,
        };
        // Before the secrets are sent (`serve`), so before any of the function's code runs.
        if let Some(group) = &guard.group {
            group.enter(pid).map_err(|why| {
                Error::internal(format!("function `{}`: {why}", inv.function))
                    .with_hint("see `basin doctor` for the memory wall; invoke again")
            })?;
        }
        let deadline_ms =
            Some(now_ms() + inv.limits.timeout.unwrap_or(DEFAULT_TIMEOUT).as_millis() as i64);
        let (name, file, source): (&str, &Path, &str) = match &inv.target {
            Target::Python { file, name, source } => (name, file, source),
            Target::Program { argv } => (&inv.function, Path::new(&argv[0]), ""),
        };
        let request = serde_json::to_vec(&Request {
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
        .map_err(|e| Error::internal(format!("request: {e}")))?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let server = tokio::spawn(serve(
            listener,
            ws.id.clone(),
            forked,
            Talk {
                request,
                secrets,
                max_reply: options.max_reply_size,
                counters: options.counters.clone(),
            },
            reply_tx,
            sink,
        ));
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
        let (reply, status, mut error) = watched;
        let mut status = status;
        // The kernel stopped one of its processes at the limit (unless Basin's sampling did
        // first, with its own count): the invocation fails, even if it caught that.
        if let Some(group) = &guard.group
            && status != InvocationStatus::Memory
            && group.oom_kills() > 0
        {
            let cpu_ms = error.as_ref().map_or(0.0, |e| e.cpu_ms);
            error = Some(Stopped {
                cpu_ms,
                ..kernel_stopped(inv, memory_limit, group.peak(), options)
            });
            status = InvocationStatus::Memory;
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
        let cpu_ms = reply
            .as_ref()
            .and_then(|r| r.usage.as_ref())
            .map_or(0.0, |u| u.cpu_ms);
        let peak = reply
            .as_ref()
            .and_then(|r| r.usage.as_ref())
            .map_or(0, |u| u.max_rss_bytes);
        let mut run = Run {
            status,
            cpu_ms,
            peak_memory: peak,
            unconfined: reply
                .as_ref()
                .map(|r| r.unconfined.clone())
                .unwrap_or_default(),
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

struct Run {
    status: InvocationStatus,
    cpu_ms: f64,
    peak_memory: u64,
    unconfined: Vec<String>,
    result: Result<Output>,
}

/// PATH inside the function: the environment's programs first.
fn search_path(env: &Env) -> String {
    format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        env.path.join("bin").display()
    )
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

/// Ends workers idle for the keep-alive. It sleeps until the next one could expire, and
/// with no workers at all until one starts: an idle runtime wakes for nothing.
async fn reap_idle(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            let keep_alive = inner.options.keep_alive;
            let mut next: Option<Duration> = None;
            for slot in inner.slots() {
                let mut slot = slot.lock().await;
                let Some(left) = slot.as_ref().map(|z| z.time_left(keep_alive)) else {
                    continue;
                };
                if left.is_zero() {
                    slot.take(); // dropping it kills the worker
                } else {
                    next = Some(next.map_or(left, |n| n.min(left)));
                }
            }
            next
        };
        match next {
            Some(left) => {
                tokio::select! {
                    _ = tokio::time::sleep(left.max(Duration::from_millis(50))) => {}
                    _ = wake.notified() => {}
                }
            }
            None => {
                // No worker alive: nothing will be handed over soon.
                if let Some(inner) = inner.upgrade() {
                    inner.pool.clear();
                }
                wake.notified().await
            }
        }
    }
}

/// Bytes as people read them (KiB, MiB, GiB).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
