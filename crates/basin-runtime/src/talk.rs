//! The invocation's socket: who may connect, the secrets and the request out, the reply and
//! the output lines in.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::options::RuntimeCounters;
use crate::protocol::{Hello, Reply, Stream};
use crate::runtime::{OutputSink, bytes};
use crate::zygote::Forked;

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
