//! A fork server per environment (python/basin/_worker.py): started once, it imports the heavy
//! packages, then forks one fresh child per invocation. Basin writes fork requests on its
//! stdin and reads what happened (forked, exited) on its stdout.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basin_core::{Error, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;

use crate::cgroup::{Cgroups, Group};
use crate::protocol::{Fork, Sandbox, ZygoteEvent};

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Code(i32),
    Signal(i32),
    /// The zygote itself went away.
    Unknown,
}

/// A child the zygote forked for an invocation: its id, and the init of its PID namespace.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Forked {
    pub pid: u32,
    pub init: Option<u32>,
}

/// A child's memory group, being made and entered while the child waits for its request.
pub(crate) type GroupAhead = oneshot::Receiver<std::result::Result<Group, String>>;

#[derive(Default)]
struct Waiters {
    forked: HashMap<String, oneshot::Sender<Forked>>,
    exits: HashMap<String, oneshot::Sender<Exit>>,
    invocation_of: HashMap<u32, String>,
    /// Children's memory groups (the `memory` wall), until an invocation takes one or the
    /// child ends.
    groups: HashMap<u32, GroupAhead>,
}

pub(crate) struct Zygote {
    pub pid: u32,
    stdin: tokio::sync::Mutex<ChildStdin>,
    waiters: Arc<Mutex<Waiters>>,
    /// Invocations running now; the keep-alive counts from the last one's end.
    pub active: AtomicUsize,
    pub idle_since: Mutex<Instant>,
    _child: Child,
}

impl Zygote {
    /// Starts a fork server with `python` (an environment's), importing `preload` first;
    /// its spare children build the walls of `ahead` while they wait for a request, and are
    /// moved into memory groups made in `cgroups` meanwhile.
    pub async fn start(
        python: &Path,
        preload: &[String],
        path_var: &str,
        ahead: &Sandbox,
        cgroups: Option<Cgroups>,
    ) -> Result<Self> {
        let started = Instant::now();
        let mut child = spawn_worker(python, preload, path_var, ahead)?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take().expect("piped stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (preloaded, start_ms) = ready(python, &mut lines, &mut stderr).await?;
        tracing::debug!(
            pid,
            start_ms,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            ?preloaded,
            "zygote ready"
        );
        // Whatever the zygote itself prints later (children print to their own sockets).
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(target: "basin::worker", "{line}");
            }
        });
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        tokio::spawn(route_events(lines, waiters.clone(), cgroups));
        Ok(Self {
            pid,
            stdin: tokio::sync::Mutex::new(stdin),
            waiters,
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            _child: child,
        })
    }

    /// Forks a child for `fork`; returns it and a receiver for how it ends.
    pub async fn fork(&self, fork: &Fork<'_>) -> Result<(Forked, oneshot::Receiver<Exit>)> {
        let (forked_tx, forked_rx) = oneshot::channel();
        let (exit_tx, exit_rx) = oneshot::channel();
        {
            let mut w = self.waiters.lock().expect("waiters");
            w.forked.insert(fork.invocation.to_string(), forked_tx);
            w.exits.insert(fork.invocation.to_string(), exit_tx);
        }
        let mut line = serde_json::to_vec(fork).expect("a fork request serializes");
        line.push(b'\n');
        let lost = || {
            Error::internal("the environment's worker stopped")
                .with_hint("invoke again; a new worker starts")
        };
        {
            let mut stdin = self.stdin.lock().await;
            stdin.write_all(&line).await.map_err(|_| lost())?;
            stdin.flush().await.map_err(|_| lost())?;
        }
        let forked = tokio::time::timeout(Duration::from_secs(30), forked_rx)
            .await
            .map_err(|_| lost())?
            .map_err(|_| lost())?;
        if forked.pid == 0 {
            return Err(lost()); // the worker could not fork
        }
        Ok((forked, exit_rx))
    }

    /// A kept child's next invocation: the child's end is reported to `invocation` from
    /// now on (its last invocation's watch is forgotten). A child that has ended already
    /// (or whose worker has) answers at once.
    pub(crate) fn rewatch(&self, pid: u32, invocation: &str) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        let mut w = self.waiters.lock().expect("waiters");
        match w.invocation_of.get_mut(&pid) {
            Some(id) => {
                let last = std::mem::replace(id, invocation.to_string());
                w.exits.remove(&last);
                w.exits.insert(invocation.to_string(), tx);
            }
            None => {
                let _ = tx.send(Exit::Unknown);
            }
        }
        rx
    }

    /// Whether child `pid` is alive, as far as its worker has said.
    pub(crate) fn has_child(&self, pid: u32) -> bool {
        self.waiters
            .lock()
            .expect("waiters")
            .invocation_of
            .contains_key(&pid)
    }

    /// Forgets the watch of an invocation whose child was kept (it did not end).
    pub(crate) fn forget(&self, invocation: &str) {
        self.waiters
            .lock()
            .expect("waiters")
            .exits
            .remove(invocation);
    }

    /// The memory group made for child `pid` while it waited, if one was.
    pub(crate) fn take_group(&self, pid: u32) -> Option<GroupAhead> {
        self.waiters.lock().expect("waiters").groups.remove(&pid)
    }

    pub fn begin(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
    }

    pub fn end(&self) {
        *self.idle_since.lock().expect("idle") = Instant::now();
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// How long until no invocation will have run for `keep_alive` (zero: now); a worker
    /// running invocations has all of `keep_alive` left (the reaper is woken when one ends).
    pub fn time_left(&self, keep_alive: Duration) -> Duration {
        if self.active.load(Ordering::SeqCst) > 0 {
            return keep_alive;
        }
        keep_alive.saturating_sub(self.idle_since.lock().expect("idle").elapsed())
    }
}

/// Starts `python -m basin._worker zygote`, with nothing of Basin's environment but `PATH`.
fn spawn_worker(
    python: &Path,
    preload: &[String],
    path_var: &str,
    ahead: &Sandbox,
) -> Result<Child> {
    Command::new(python)
        .args(["-I", "-B", "-m", "basin._worker", "zygote", "--preload"])
        .arg(preload.join(","))
        .arg("--ahead")
        .arg(serde_json::to_string(ahead).expect("a sandbox serializes"))
        .env_clear()
        .env("PATH", path_var)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own group: a Ctrl-C meant for Basin reaches Basin, which then cleans up.
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io_with(format!("cannot start {}", python.display()), e))
}

/// Waits (five minutes at most: preloading imports heavy packages) for the worker's first
/// line, which says it is ready; returns what it preloaded and how long that took. A worker
/// that never says so fails with what it printed on stderr.
async fn ready(
    python: &Path,
    lines: &mut Lines<BufReader<ChildStdout>>,
    stderr: &mut ChildStderr,
) -> Result<(Vec<String>, f64)> {
    let first = tokio::time::timeout(Duration::from_secs(300), lines.next_line()).await;
    match first {
        Ok(Ok(Some(line))) => match serde_json::from_str(&line) {
            Ok(ZygoteEvent::Ready { preloaded, ms, .. }) => Ok((preloaded, ms)),
            _ => Err(Error::internal(format!(
                "the worker said `{line}` instead of ready"
            ))),
        },
        _ => {
            let mut text = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), stderr.read_to_string(&mut text))
                .await;
            Err(Error::internal(format!(
                "the worker of {} did not start:\n{}",
                python.display(),
                text.trim_end()
            ))
            .with_hint("rebuild the environment with `basin env rm HASH`, then invoke again"))
        }
    }
}

/// Reads the zygote's events until it is gone, handing each to whoever waits for it: a
/// fork's child to its invocation, a child's end to its watch, a new spare's memory group
/// (made and entered on a blocking thread) to the invocation that takes the spare.
async fn route_events(
    mut lines: Lines<BufReader<ChildStdout>>,
    waiters: Arc<Mutex<Waiters>>,
    cgroups: Option<Cgroups>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        // A group dropped here is killed and removed after the lock is let go.
        let mut stale = None;
        let mut w = waiters.lock().expect("waiters");
        match serde_json::from_str(&line) {
            Ok(ZygoteEvent::Forked { forked, pid, init }) => {
                w.invocation_of.insert(pid, forked.clone());
                if let Some(tx) = w.forked.remove(&forked) {
                    let _ = tx.send(Forked { pid, init });
                }
            }
            Ok(ZygoteEvent::Exited {
                exited,
                code,
                signal,
            }) => {
                let exit = match (code, signal) {
                    (_, Some(s)) => Exit::Signal(s),
                    (Some(c), None) => Exit::Code(c),
                    _ => Exit::Unknown,
                };
                if let Some(id) = w.invocation_of.remove(&exited)
                    && let Some(tx) = w.exits.remove(&id)
                {
                    let _ = tx.send(exit);
                }
                // A spare retired or killed before its request: its group goes.
                stale = w.groups.remove(&exited);
            }
            Ok(ZygoteEvent::Spare { spare }) => {
                if let Some(cgroups) = &cgroups {
                    let (tx, rx) = oneshot::channel();
                    w.groups.insert(spare, rx);
                    let cgroups = cgroups.clone();
                    tokio::task::spawn_blocking(move || {
                        let made = cgroups.create().and_then(|g| g.enter(spare).map(|()| g));
                        let _ = tx.send(made);
                    });
                }
            }
            _ => tracing::warn!(target: "basin::worker", "unexpected: {line}"),
        }
        drop(w);
        drop(stale);
    }
    // The zygote is gone: every waiter learns it (their senders drop).
    let mut w = waiters.lock().expect("waiters");
    w.forked.clear();
    w.exits.clear();
    w.invocation_of.clear();
    let groups = std::mem::take(&mut w.groups);
    drop(w);
    drop(groups);
}
