//! Watching one invocation from outside: its wall clock, the memory of all its processes and
//! the size of its folder (which is in memory too), stopping it at a limit; and ending it so
//! that nothing of it still runs when Basin reads its output. Its socket is `talk`'s.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use basin_core::{Error, InvocationStatus};
use tokio::sync::oneshot;

use crate::options::{DEFAULT_TIMEOUT, RuntimeCounters, RuntimeOptions};
use crate::protocol::Reply;
use crate::runtime::Invocation;
use crate::zygote::{Exit, Forked};
use basin_core::units::format_size as bytes;

/// Why Basin stopped an invocation, with what it had sampled of it.
pub(crate) struct Stopped {
    pub error: Error,
    pub peak_memory: u64,
    pub cpu_ms: f64,
}

/// An invocation whose process ended before its result: how it ended.
fn died(inv: &Invocation, exit: Option<Exit>) -> Error {
    let how = match exit {
        Some(Exit::Code(c)) => format!("exited with code {c}"),
        Some(Exit::Signal(s)) => format!("was killed by signal {s}"),
        Some(Exit::Unknown) | None => "stopped".to_string(),
    };
    Error::invalid(format!(
        "function `{}` {how} before returning a result",
        inv.function
    ))
    .with_hint("its stderr above says why; nothing was written")
}

/// What to do about an invocation stopped at its memory limit, however it was counted.
const OVER_MEMORY_HINT: &str = "raise it with @basin.python(memory=\"4GiB\"), or read fewer columns and rows (columns=, filter=); nothing was written";

/// An invocation the kernel stopped at its memory group's limit (the `memory` wall), which
/// counts what sampling `/proc` cannot: a memfd, files in memory, shared memory.
pub(crate) fn kernel_stopped(inv: &Invocation, limit: u64, options: &RuntimeOptions) -> Error {
    RuntimeCounters::count(&options.counters.over_memory);
    Error::invalid(format!(
        "function `{}` reached its memory limit of {} (counted by the kernel: its processes, \
         shared memory and the files it holds in memory) and was stopped",
        inv.function,
        bytes(limit)
    ))
    .with_hint(OVER_MEMORY_HINT)
}

/// What `watch` checks besides the clock: the invocation's memory (its processes and its
/// folder's files) and its folder's size.
pub(crate) struct Bounds<'a> {
    pub memory: u64,
    pub folder: &'a Path,
    /// Bytes in the folder before the function started (its inputs, written by Basin).
    pub folder_base: u64,
    pub options: &'a RuntimeOptions,
}

/// Waits for the reply, enforcing the timeout, the memory limit and the folder limit from
/// outside. `exit_rx` is left in place unless the process's end was seen here.
pub(crate) async fn watch(
    forked: Forked,
    inv: &Invocation,
    bounds: Bounds<'_>,
    mut reply_rx: oneshot::Receiver<Reply>,
    exit_rx: &mut Option<oneshot::Receiver<Exit>>,
) -> (Option<Reply>, InvocationStatus, Option<Stopped>) {
    let timeout = inv.limits.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    // The first sample after one period, not at once: an invocation shorter than that is
    // not sampled at all (reading /proc costs about a millisecond of a short call's time).
    let period = Duration::from_millis(10);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks = 0u64;
    let mut peak = 0u64;
    let mut cpu_ms = 0.0f64;
    let mut written = 0u64;
    let mut tree = TreeSampler::default();
    let counters = &bounds.options.counters;
    let stopped = |error: Error, peak: u64, cpu_ms: f64| Stopped {
        error,
        peak_memory: peak,
        cpu_ms,
    };
    let mut exit_slot = exit_rx.take().expect("an exit receiver");
    // A oneshot receiver must not be polled again once it has answered.
    let mut exit_seen = false;
    let result = loop {
        tokio::select! {
            reply = &mut reply_rx => {
                break match reply {
                    Ok(reply) => {
                        let status = if reply.status == "ok" { InvocationStatus::Ok } else { InvocationStatus::Error };
                        (Some(reply), status, None)
                    }
                    Err(_) => {
                        // The connection closed without a result: the process is ending; say how.
                        let exit = tokio::time::timeout(Duration::from_millis(500), &mut exit_slot).await;
                        exit_seen = exit.is_ok();
                        let error = match exit {
                            Ok(Ok(exit)) => died(inv, Some(exit)),
                            _ => Error::internal(format!("function `{}` closed its connection without a result", inv.function)),
                        };
                        (None, InvocationStatus::Error, Some(stopped(error, peak, cpu_ms)))
                    }
                };
            }
            exit = &mut exit_slot => {
                // The reply may still be in the socket: give it a moment.
                if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_millis(500), &mut reply_rx).await {
                    let status = if reply.status == "ok" { InvocationStatus::Ok } else { InvocationStatus::Error };
                    return (Some(reply), status, None);
                }
                return (None, InvocationStatus::Error, Some(stopped(died(inv, exit.ok()), peak, cpu_ms)));
            }
            _ = &mut deadline => {
                RuntimeCounters::count(&counters.timed_out);
                let error = Error::invalid(format!(
                    "function `{}` ran past its timeout of {} and was stopped",
                    inv.function, seconds(timeout)
                ))
                .with_hint("raise it with @basin.python(timeout=\"10m\"), or make the function do less; nothing was written");
                break (None, InvocationStatus::Timeout, Some(stopped(error, peak, cpu_ms)));
            }
            _ = tick.tick() => {
                ticks += 1;
                // The folder is walked, and the other processes' shares read, ten times less
                // often than the biggest process's memory.
                if ticks % 10 == 1 {
                    written = folder_bytes(bounds.folder).saturating_sub(bounds.folder_base);
                    let limit = bounds.options.max_folder_size;
                    if written > limit {
                        RuntimeCounters::count(&counters.over_folder);
                        let error = Error::invalid(format!(
                            "function `{}` wrote {} into its folder, over the limit of {} ([functions] max_folder_size), and was stopped",
                            inv.function, bytes(written), bytes(limit)
                        ))
                        .with_hint("write less (outputs and temporary files are held in memory), or raise [functions] max_folder_size in basin.toml; nothing was written");
                        break (None, InvocationStatus::Memory, Some(stopped(error, peak, cpu_ms)));
                    }
                }
                if let Some((rss, cpu, processes)) = tree.sample(forked, ticks % 10 == 1) {
                    // Counted from outside too: the rlimit does not hold for root.
                    let limit = bounds.options.max_processes as usize;
                    if processes > limit {
                        RuntimeCounters::count(&counters.over_processes);
                        let error = Error::invalid(format!(
                            "function `{}` started more than {limit} processes ([functions] max_processes) and was stopped",
                            inv.function
                        ))
                        .with_hint("start fewer processes, or raise [functions] max_processes in basin.toml; nothing was written");
                        break (None, InvocationStatus::Error, Some(stopped(error, peak, cpu_ms)));
                    }
                    let used = rss + written;
                    peak = peak.max(used);
                    cpu_ms = cpu;
                    if used > bounds.memory {
                        RuntimeCounters::count(&counters.over_memory);
                        let error = Error::invalid(format!(
                            "function `{}` used {} of memory ({} in processes, {} in files in its folder), over its limit of {}, and was stopped",
                            inv.function, bytes(used), bytes(rss), bytes(written), bytes(bounds.memory)
                        ))
                        .with_hint(OVER_MEMORY_HINT);
                        break (None, InvocationStatus::Memory, Some(stopped(error, peak, cpu_ms)));
                    }
                }
            }
        }
    };
    if !exit_seen {
        *exit_rx = Some(exit_slot);
    }
    result
}

/// Resident memory (bytes) and CPU time (ms, its own and its reaped children's) of a
/// process, from /proc.
fn sample(pid: u32) -> Option<(u64, f64)> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime, stime, cutime, cstime.
    let ticks: u64 = (11..15)
        .map(|i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum::<Option<u64>>()?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    Some((
        resident * rustix::param::page_size() as u64,
        ticks as f64 * 1000.0 / hz,
    ))
}

/// A process's share of the anonymous memory it maps (`Pss_Anon`): pages a fork still shares
/// with its parent and siblings count once over all of them.
fn proportional_anon(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss_Anon:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The children of `pid`, over all its threads.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut kids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            kids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    kids
}

/// The most processes one sample visits (the process limit keeps real trees far smaller).
const MAX_SAMPLED: usize = 4096;

/// Samples the process Basin forked and everything under it, and with a PID namespace every
/// other process of the invocation (orphans, adopted by the namespace's init). The biggest
/// process counts whole (its resident memory, as before there were children); each other one
/// by its share of anonymous memory, so what a fork shares with its parent is not counted
/// twice. Those shares cost more to read, so they are refreshed every `deep` sample only.
#[derive(Default)]
pub(crate) struct TreeSampler {
    others: u64,
}

impl TreeSampler {
    /// Memory (bytes), CPU time (ms) and number of processes of the invocation's processes;
    /// None once the one Basin forked is gone.
    pub(crate) fn sample(&mut self, forked: Forked, deep: bool) -> Option<(u64, f64, usize)> {
        let root = forked.pid;
        let mut stack = vec![root];
        stack.extend(forked.init.map(children).unwrap_or_default());
        let mut procs = Vec::new();
        let mut cpu = 0.0;
        while let Some(pid) = stack.pop() {
            if procs.len() >= MAX_SAMPLED {
                break;
            }
            let Some((rss, ms)) = sample(pid) else {
                if pid == root {
                    return None;
                }
                continue;
            };
            cpu += ms;
            procs.push((pid, rss));
            stack.extend(children(pid));
        }
        let (big_pid, big_rss) = procs.iter().max_by_key(|(_, rss)| *rss).copied()?;
        if deep {
            self.others = procs
                .iter()
                .filter(|(pid, _)| *pid != big_pid)
                .filter_map(|(pid, _)| proportional_anon(*pid))
                .sum();
        }
        Some((big_rss + self.others, cpu, procs.len()))
    }
}

/// The most entries one walk of a folder counts.
const MAX_WALKED: usize = 100_000;

/// Memory a folder's files hold (allocated blocks, and about a kilobyte per entry), bounded.
pub(crate) fn folder_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![dir.to_path_buf()];
    let (mut total, mut seen) = (0u64, 0usize);
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_WALKED {
                return total + (seen as u64) * 1024;
            }
            let Ok(meta) = entry.metadata() else { continue };
            total += meta.blocks() * 512 + 1024;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// The init of the invocation's PID namespace (the `processes` wall) as a pidfd, so its id
/// cannot be reused while Basin signals it; checked to be the init of the namespace the
/// invocation's process is in.
fn namespace_init(forked: Forked) -> Option<OwnedFd> {
    let init = forked.init?;
    let fd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(init as i32)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()?;
    // Checked after opening: the pidfd now names this process, whatever happens to the id.
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).ok()?;
    let is_init = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|ids| ids.split_whitespace().last())
        == Some("1");
    let namespace = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let same = match namespace(forked.pid) {
        Some(ns) => namespace(init) == Some(ns),
        // The invocation's process is gone; its init still names the namespace it was in.
        None => true,
    };
    (is_init && same).then_some(fd)
}

/// An invocation's processes, killed by [`end`]; [`Ended::wait`] sees them gone.
pub(crate) enum Ended {
    /// The init of its PID namespace: the kernel kills every other process in it before the
    /// init's end is reported, when its pidfd becomes readable.
    Namespace(OwnedFd),
    /// Without a PID namespace: the end of the process group's leader.
    Leader(Option<oneshot::Receiver<Exit>>),
}

/// Ends the invocation: kills the init of its PID namespace, or else its process group.
pub(crate) fn end(forked: Forked, exit_rx: Option<oneshot::Receiver<Exit>>) -> Ended {
    let pid = forked.pid;
    let ended = match namespace_init(forked) {
        Some(init) => {
            let _ = rustix::process::pidfd_send_signal(&init, rustix::process::Signal::KILL);
            Ended::Namespace(init)
        }
        None => Ended::Leader(exit_rx),
    };
    kill_group(pid);
    ended
}

impl Ended {
    /// Waits until none of the invocation's processes is left, so nothing changes its files
    /// while Basin reads them; whether the end was seen (false: a process may still be
    /// running; without a PID namespace, one that left the group may be running anyway).
    pub(crate) async fn wait(self) -> bool {
        const PATIENCE: Duration = Duration::from_secs(5);
        match self {
            Ended::Namespace(init) => {
                // SAFETY: `init` is an OwnedFd moved into the AsyncFd, which alone holds it
                // open until it is dropped at the end of this block.
                let registered = unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        init,
                        tokio::io::Interest::READABLE,
                    )
                };
                match registered {
                    Ok(fd) => matches!(
                        tokio::time::timeout(PATIENCE, fd.readable()).await,
                        Ok(Ok(_))
                    ),
                    Err(_) => false,
                }
            }
            Ended::Leader(Some(rx)) => {
                matches!(tokio::time::timeout(PATIENCE, rx).await, Ok(Ok(_)))
            }
            Ended::Leader(None) => true,
        }
    }
}

/// Kills the process group led by `pid` (the child made itself a session leader), and the
/// process itself in case it had not yet.
pub(crate) fn kill_group(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 && s % 60.0 == 0.0 {
        format!("{}m", s / 60.0)
    } else {
        format!("{s}s")
    }
}
