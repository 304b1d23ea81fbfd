//! Watching one invocation from outside: its connections (the request out, the result and
//! its output lines in), its wall clock, and its memory, killing its process group at a limit.

use std::time::Duration;

use basin_catalog::{Error, InvocationStatus};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::protocol::{Hello, Reply, Stream};
use crate::runtime::{DEFAULT_TIMEOUT, Invocation, OutputSink, bytes};
use crate::zygote::Exit;

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

/// Waits for the reply, enforcing the timeout and the memory limit from outside.
pub(crate) async fn watch(
    pid: u32,
    inv: &Invocation,
    memory_limit: u64,
    mut reply_rx: oneshot::Receiver<Reply>,
    mut exit_rx: oneshot::Receiver<Exit>,
) -> (Option<Reply>, InvocationStatus, Option<Stopped>) {
    let timeout = inv.limits.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut peak = 0u64;
    let mut cpu_ms = 0.0f64;
    let stopped = |error: Error, peak: u64, cpu_ms: f64| Stopped {
        error,
        peak_memory: peak,
        cpu_ms,
    };
    loop {
        tokio::select! {
            reply = &mut reply_rx => {
                return match reply {
                    Ok(reply) => {
                        let status = if reply.status == "ok" { InvocationStatus::Ok } else { InvocationStatus::Error };
                        (Some(reply), status, None)
                    }
                    Err(_) => {
                        // The connection closed without a result: the process is ending; say how.
                        let exit = tokio::time::timeout(Duration::from_millis(500), &mut exit_rx).await;
                        let error = match exit {
                            Ok(Ok(exit)) => died(inv, Some(exit)),
                            _ => Error::internal(format!("function `{}` closed its connection without a result", inv.function)),
                        };
                        (None, InvocationStatus::Error, Some(stopped(error, peak, cpu_ms)))
                    }
                };
            }
            exit = &mut exit_rx => {
                // The reply may still be in the socket: give it a moment.
                if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_millis(500), &mut reply_rx).await {
                    let status = if reply.status == "ok" { InvocationStatus::Ok } else { InvocationStatus::Error };
                    return (Some(reply), status, None);
                }
                return (None, InvocationStatus::Error, Some(stopped(died(inv, exit.ok()), peak, cpu_ms)));
            }
            _ = &mut deadline => {
                kill_group(pid);
                let error = Error::invalid(format!(
                    "function `{}` ran past its timeout of {} and was stopped",
                    inv.function, seconds(timeout)
                ))
                .with_hint("raise it with @basin.python(timeout=\"10m\"), or make the function do less; nothing was written");
                return (None, InvocationStatus::Timeout, Some(stopped(error, peak, cpu_ms)));
            }
            _ = tick.tick() => {
                if let Some((rss, cpu)) = sample(pid) {
                    peak = peak.max(rss);
                    cpu_ms = cpu;
                    if rss > memory_limit {
                        kill_group(pid);
                        let error = Error::invalid(format!(
                            "function `{}` used {} of memory, over its limit of {}, and was stopped",
                            inv.function, bytes(rss), bytes(memory_limit)
                        ))
                        .with_hint("raise it with @basin.python(memory=\"4GiB\"), or read fewer columns and rows (columns=, filter=); nothing was written");
                        return (None, InvocationStatus::Memory, Some(stopped(error, peak, cpu_ms)));
                    }
                }
            }
        }
    }
}

/// The longest piece of an output line forwarded at once.
const MAX_LINE_BYTES: u64 = 64 * 1024;

/// Accepts the child's connections: stdout and stderr are forwarded line by line; the
/// control connection gets the request and gives the reply.
pub(crate) async fn serve(
    listener: UnixListener,
    invocation: String,
    request: Vec<u8>,
    reply_tx: oneshot::Sender<Reply>,
    sink: OutputSink,
) {
    let mut reply_tx = Some(reply_tx);
    let mut request = Some(request);
    let mut forwarders = Vec::new();
    // stdout, stderr and control: at most three connections are expected.
    for _ in 0..3 {
        let Ok((stream, _)) = listener.accept().await else {
            break;
        };
        let mut reader = BufReader::new(stream);
        let mut first = Vec::new();
        if reader.read_until(b'\n', &mut first).await.is_err() {
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
                forwarders.push(tokio::spawn(control(reader, request, tx)));
            }
            stream => {
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
) {
    request.push(b'\n');
    if reader.get_mut().write_all(&request).await.is_err() {
        return;
    }
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).await.is_ok()
        && let Ok(reply) = serde_json::from_slice::<Reply>(&line)
    {
        let _ = reply_tx.send(reply);
    }
}

/// Resident memory and CPU time (ms) of a process, from /proc.
pub(crate) fn sample(pid: u32) -> Option<(u64, f64)> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let rss = pages * rustix::param::page_size() as u64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    Some((rss, ticks as f64 * 1000.0 / hz))
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
