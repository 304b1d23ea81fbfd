//! Runs functions: one warm fork server per environment, a confined child per invocation
//! (fresh, or kept from the last invocation of the same function version: `warm`), limits
//! enforced from outside the child, and a metering record for each.

use basin_core::time::now_ms;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use basin_core::{InvocationKind, InvocationRecord, InvocationStatus, Result};
use tokio::sync::{Notify, Semaphore};

mod run;
mod warm;

use crate::env::{Env, EnvCache, EnvSpec};
pub use crate::invocation::{Finished, Invocation, OutputSink};
use crate::monitor::kill_group;
use crate::options::{DEFAULT_MEMORY, RuntimeCounters, RuntimeOptions};
use crate::pool::Pool;
use crate::protocol::{Sandbox, SandboxLimits};
use crate::walls::Walls;
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
    /// Children kept for the next invocation of their function (`[functions] reuse`).
    kept: crate::kept::Kept,
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
        let mut walls = Walls::probe(options.isolation, &options.disable_walls);
        walls.share_cpu(options.nice, true);
        let pool = Arc::new(Pool::new(
            scratch.join("pool"),
            options.handoff_pool,
            options.counters.clone(),
        ));
        let kept = crate::kept::Kept::new(options.max_kept, options.counters.clone());
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
            kept,
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

    /// How many children are kept for the next invocation of their function now.
    pub fn kept(&self) -> usize {
        self.inner.kept.count()
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
        self.inner.kept.clear();
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
                file_size: largest_file(options.max_folder_size),
                nice: options.nice,
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
        let cgroups = self.inner.walls.cgroups.clone();
        let z = Zygote::start(&env.python, preload, &search_path(env), &ahead, cgroups).await?;
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
        mut workspace: Workspace,
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
        let ran = match self
            .inner
            .walls
            .check(&invocation.function, invocation.limits.internet)
        {
            Ok(()) => {
                self.run(&mut workspace, &invocation, memory_limit, sink)
                    .await
            }
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
}

/// PATH inside the function: the environment's programs first.
fn search_path(env: &Env) -> String {
    format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        env.path.join("bin").display()
    )
}

/// Ends workers idle for the keep-alive. It sleeps until the next one could expire, and
/// with no workers at all until one starts: an idle runtime wakes for nothing.
async fn reap_idle(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            let keep_alive = inner.options.keep_alive;
            // Kept children first: one retired here lets its worker's keep-alive start.
            let mut next: Option<Duration> = inner.kept.expire(inner.options.keep_warm);
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

/// The largest file a function may write (`RLIMIT_FSIZE`): a little under its folder's cap
/// (`[functions] max_folder_size`), which also counts each entry's overhead. At the cap
/// itself, one file the kernel let grow to its limit would put the folder over it: whether
/// the function saw `EFBIG` or was stopped would depend on when the folder was last sampled.
fn largest_file(max_folder_size: u64) -> u64 {
    max_folder_size - (max_folder_size / 8).min(1 << 20)
}
