//! Watching one invocation from outside: its connections (the request out, the result and
//! its output lines in), its wall clock, the memory of all its processes and the size of its
//! folder (which is in memory too), stopping it at a limit; and ending it so that nothing of
//! it still runs when Basin reads its output.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use basin_catalog::{Error, InvocationStatus};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::options::{DEFAULT_TIMEOUT, RuntimeCounters, RuntimeOptions};
use crate::protocol::{Hello, Reply, Stream};
use crate::runtime::{Invocation, OutputSink, bytes};
use crate::zygote::{Exit, Forked};

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

/// The longest piece of an output line forwarded at once.
const MAX_LINE_BYTES: u64 = 64 * 1024;

/// What Basin says to an invocation on its socket, and how much it hears back.
pub(crate) struct Talk {
    /// The request line, sent on the control stream.
    pub request: Vec<u8>,
    /// The secrets (a JSON object), sent first on the stdout stream.
    pub secrets: Vec<u8>,
    /// The longest reply line read (`[functions] max_reply_size`).
    pub max_reply: u64,
    pub counters: Arc<RuntimeCounters>,
}

/// Accepts the child's connections: stdout and stderr are forwarded line by line; the
/// control connection gets the request and gives the reply.
pub(crate) async fn serve(
    listener: UnixListener,
    invocation: String,
    child: Forked,
    talk: Talk,
    reply_tx: oneshot::Sender<Reply>,
    sink: OutputSink,
) {
    let Talk {
        request,
        mut secrets,
        max_reply,
        counters,
    } = talk;
    secrets.push(b'\n');
    let mut reply_tx = Some(reply_tx);
    let mut request = Some(request);
    let mut forwarders = Vec::new();
    // Who may connect: with the `processes` wall, a process in the child's PID namespace
    // (a program may connect its control stream from a helper process of its own), and no
    // other invocation's; if that namespace cannot be read, nobody. Without the wall, any
    // process that can reach the socket.
    let namespace = child
        .init
        .map(|_| std::fs::read_link(format!("/proc/{}/ns/pid", child.pid)).ok());
    let ours = |pid: Option<i32>| match &namespace {
        Some(Some(ns)) => pid.is_some_and(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|link| &link == ns)
        }),
        Some(None) => false,
        None => true,
    };
    // stdout, stderr and control: a connection refused below does not take one's place.
    let mut taken = 0;
    while taken < 3 {
        let Ok((stream, _)) = listener.accept().await else {
            break;
        };
        // Checked before anything is read: another invocation's process cannot hold this
        // loop up by never finishing its hello.
        let peer = stream.peer_cred().ok().and_then(|c| c.pid());
        if !ours(peer) {
            continue;
        }
        let mut reader = BufReader::new(stream);
        let mut first = Vec::new();
        // A hello is a line of a few dozen bytes: a longer one is not read whole, and a slow
        // one not waited for.
        let mut hello = (&mut reader).take(MAX_HELLO_BYTES);
        let read = hello.read_until(b'\n', &mut first);
        if !matches!(tokio::time::timeout(HELLO_TIMEOUT, read).await, Ok(Ok(_))) {
            continue;
        }
        let Ok(hello) = serde_json::from_slice::<Hello>(&first) else {
            continue;
        };
        if hello.invocation != invocation {
            continue;
        }
        match hello.stream {
            Stream::Control => {
                let (Some(tx), Some(request)) = (reply_tx.take(), request.take()) else {
                    continue;
                };
                taken += 1;
                let cap = (max_reply, counters.clone());
                forwarders.push(tokio::spawn(control(reader, request, tx, cap)));
            }
            stream => {
                // Output streams are connected by the forked child itself, before any user
                // code runs: from any other process (one that learned the socket's path) they
                // are refused, so the secrets reach the child alone, and once.
                if !peer.is_some_and(|pid| u32::try_from(pid) == Ok(child.pid)) {
                    continue;
                }
                taken += 1;
                // The child's first read on its stdout stream: the function's secrets (a JSON
                // object).
                if stream == Stream::Stdout {
                    let secrets = std::mem::take(&mut secrets);
                    if reader.get_mut().write_all(&secrets).await.is_err() {
                        continue;
                    }
                }
                let sink = sink.clone();
                forwarders.push(tokio::spawn(async move {
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        // A line longer than this arrives in pieces: a function that prints
                        // without newlines cannot make Basin hold it whole.
                        let mut piece = (&mut reader).take(MAX_LINE_BYTES);
                        match piece.read_until(b'\n', &mut line).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {
                                let text = String::from_utf8_lossy(&line);
                                sink(stream, text.trim_end_matches(['\n', '\r']));
                            }
                        }
                    }
                }));
            }
        }
    }
    for task in forwarders {
        let _ = task.await;
    }
}

async fn control(
    mut reader: BufReader<UnixStream>,
    mut request: Vec<u8>,
    reply_tx: oneshot::Sender<Reply>,
    (max_reply, counters): (u64, Arc<RuntimeCounters>),
) {
    request.push(b'\n');
    if reader.get_mut().write_all(&request).await.is_err() {
        return;
    }
    let mut line = Vec::new();
    // Read up to the cap only: a function streaming bytes without a newline cannot make
    // Basin hold them (tables travel as files, not in the reply).
    let read = (&mut reader)
        .take(max_reply)
        .read_until(b'\n', &mut line)
        .await;
    if read.is_err() {
        return;
    }
    let reply = if !line.ends_with(b"\n") && line.len() as u64 >= max_reply {
        RuntimeCounters::count(&counters.over_reply);
        Reply::refused(format!(
            "the function's reply is over {} ([functions] max_reply_size; JSON results are \
             capped: return a table, which travels as a file)",
            bytes(max_reply)
        ))
    } else {
        match serde_json::from_slice::<Reply>(&line) {
            Ok(reply) => reply,
            Err(_) => return,
        }
    };
    let _ = reply_tx.send(reply);
}

/// The largest hello line (`{"invocation": ..., "stream": ...}`) Basin reads.
const MAX_HELLO_BYTES: u64 = 4 << 10;

/// How long Basin waits for a connection's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{UnixListener, UnixStream};

    use super::{Talk, serve};

    /// An output stream is taken from the forked child only: another process that learned
    /// the socket's path and the invocation's id gets nothing (not the secrets Basin sends
    /// the child's stdout stream); the child itself gets them.
    #[tokio::test]
    async fn output_streams_come_from_the_child_and_only_it_gets_the_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("basin.sock");
        let hello = b"{\"invocation\": \"inv\", \"stream\": \"stdout\", \"pid\": 0}\n";
        let secrets = b"{\"API_KEY\": \"s3cret\"}".to_vec();
        let run = |pid: u32| {
            let child = crate::zygote::Forked { pid, init: None };
            let listener = UnixListener::bind(&path).unwrap();
            let (tx, _rx) = tokio::sync::oneshot::channel();
            let sink: crate::runtime::OutputSink = Arc::new(|_, _| {});
            tokio::spawn(serve(
                listener,
                "inv".into(),
                child,
                Talk {
                    request: Vec::new(),
                    secrets: secrets.clone(),
                    max_reply: 1 << 20,
                    counters: Arc::default(),
                },
                tx,
                sink,
            ))
        };
        let read = |mut stream: UnixStream| async move {
            stream.write_all(hello).await.unwrap();
            let mut got = vec![0u8; 64];
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut got))
                .await
                .expect("an answer or a close")
                .unwrap_or(0);
            String::from_utf8_lossy(&got[..n]).into_owned()
        };

        let other = run(u32::MAX - 1); // not this process
        let got = read(UnixStream::connect(&path).await.unwrap()).await;
        assert_eq!(got, "", "another process got: {got}");
        other.abort();
        std::fs::remove_file(&path).unwrap();

        let ours = run(std::process::id());
        let got = read(UnixStream::connect(&path).await.unwrap()).await;
        assert_eq!(got, "{\"API_KEY\": \"s3cret\"}\n");
        ours.abort();
    }
}
