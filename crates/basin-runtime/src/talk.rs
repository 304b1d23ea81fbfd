//! The invocation's socket: who may connect, the secrets and the request out, the reply and
//! the output lines in.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::options::RuntimeCounters;
use crate::protocol::{Hello, Opening, Reply, Stream};
use crate::runtime::OutputSink;
use crate::zygote::Forked;
use basin_core::units::format_size as bytes;

/// The longest piece of an output line forwarded at once.
const MAX_LINE_BYTES: u64 = 64 * 1024;

/// What Basin says to an invocation on its socket, and how much it hears back.
pub(crate) struct Talk {
    /// The request line: sent on the child's connection with the secrets, or, when the
    /// invocation runs a program, on the control connection the program makes.
    pub request: Vec<u8>,
    /// The secrets (a JSON object), sent first on the child's connection.
    pub secrets: Vec<u8>,
    /// The invocation runs a program (docs/protocol.md), which connects its own control
    /// stream after the child execs it.
    pub program: bool,
    /// The longest reply line read (`[functions] max_reply_size`).
    pub max_reply: u64,
    pub counters: Arc<RuntimeCounters>,
    /// Where the child's connection goes once its reply is read, when the child may be kept
    /// for the next invocation (`[functions] reuse`); closed otherwise.
    pub keep: Option<oneshot::Sender<UnixStream>>,
}

/// Accepts the invocation's connections. The forked child connects once, before any user
/// code runs (`Opening::Child`): on that connection Basin hands it its stdout and stderr
/// (two socket pairs whose other ends Basin reads line by line), its secrets, and for a
/// Python function the request, whose reply comes back on it. A program connects a control
/// stream of its own, which gets the request and gives the reply. One connection instead of
/// three keeps connects, accepts and peer checks off a warm invocation's path.
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
        secrets,
        program,
        max_reply,
        counters,
        mut keep,
    } = talk;
    let mut reply_tx = Some(reply_tx);
    let mut request = Some(request);
    let mut secrets = Some(secrets);
    let mut tasks = Vec::new();
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
    // A connection refused below does not take one's place.
    let mut taken = 0;
    while taken < 1 + usize::from(program) {
        let Ok((stream, _)) = listener.accept().await else {
            break;
        };
        // Checked before anything is read: another invocation's process cannot hold this
        // loop up by never finishing its hello.
        let peer = stream.peer_cred().ok().and_then(|c| c.pid());
        // Its /proc entries are about it only if it has not ended since (its id, freed,
        // could have gone to a process of the invocation).
        let Ok(held) = peer_pidfd(&stream) else {
            continue; // ended already
        };
        if !ours(peer) || held.as_ref().is_some_and(|fd| !alive(fd)) {
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
        let cap = (max_reply, counters.clone());
        match hello.stream {
            Opening::Control if program => {
                let (Some(tx), Some(request)) = (reply_tx.take(), request.take()) else {
                    continue;
                };
                taken += 1;
                tasks.push(tokio::spawn(answer(reader, Some(request), tx, cap, None)));
            }
            Opening::Control => continue,
            Opening::Child => {
                // Taken from the forked child itself only: another process that learned the
                // socket's path gets neither the secrets nor the output streams, and the
                // child gets them once.
                if !peer.is_some_and(|pid| u32::try_from(pid) == Ok(child.pid)) {
                    continue;
                }
                let Some(mut message) = secrets.take() else {
                    continue;
                };
                taken += 1;
                message.push(b'\n');
                if !program && let Some(mut request) = request.take() {
                    message.append(&mut request);
                    message.push(b'\n');
                }
                let Ok(outputs) = hand_outputs(reader.get_mut(), &message).await else {
                    continue;
                };
                for (stream, read) in [Stream::Stdout, Stream::Stderr].into_iter().zip(outputs) {
                    tasks.push(tokio::spawn(forward(read, stream, sink.clone())));
                }
                if !program && let Some(tx) = reply_tx.take() {
                    tasks.push(tokio::spawn(answer(reader, None, tx, cap, keep.take())));
                }
            }
        }
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// The next invocation of a kept child, on the connection it made for its first
/// (`serve`): its output streams and `message` (where it runs, its secrets, the request)
/// go out on it, and its reply comes back, after which the connection goes to `talk.keep`
/// again. Nothing is accepted: only the child holds the other end.
pub(crate) async fn again(
    mut stream: UnixStream,
    message: Vec<u8>,
    talk: Talk,
    reply_tx: oneshot::Sender<Reply>,
    sink: OutputSink,
) {
    let Ok(outputs) = hand_outputs(&mut stream, &message).await else {
        return;
    };
    let mut tasks: Vec<_> = [Stream::Stdout, Stream::Stderr]
        .into_iter()
        .zip(outputs)
        .map(|(kind, read)| tokio::spawn(forward(read, kind, sink.clone())))
        .collect();
    let cap = (talk.max_reply, talk.counters);
    let reader = BufReader::new(stream);
    tasks.push(tokio::spawn(answer(reader, None, reply_tx, cap, talk.keep)));
    for task in tasks {
        let _ = task.await;
    }
}

/// The connecting process as a pidfd (`SO_PEERPIDFD`, Linux 6.5); `Ok(None)` on older
/// kernels, where the check of its PID namespace keeps a window in which its id could be
/// reused; `Err` when the process has ended (kernels before 6.16 give no pidfd then).
fn peer_pidfd(stream: &UnixStream) -> Result<Option<OwnedFd>, ()> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `fd`, an int.
    let got = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if got != 0 || fd < 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOPROTOOPT | libc::EOPNOTSUPP) => Ok(None),
            _ => Err(()),
        };
    }
    // SAFETY: a descriptor the kernel just opened for this process, owned from here.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether the process a pidfd holds has not been reaped (signal 0 checks without sending).
fn alive(pidfd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 and no siginfo only checks.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Sends the child `message` with the writing ends of two fresh socket pairs attached (its
/// stdout and stderr), and returns their reading ends. Basin keeps no writing end, so a
/// stream ends once every process of the invocation has closed it.
async fn hand_outputs(stream: &mut UnixStream, message: &[u8]) -> std::io::Result<[UnixStream; 2]> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let (out, out_child) = std::os::unix::net::UnixStream::pair()?;
    let (err, err_child) = std::os::unix::net::UnixStream::pair()?;
    let fds = [out_child.as_fd(), err_child.as_fd()];
    // The descriptors travel with the message's first bytes; the rest follows as plain
    // writes.
    let sent = loop {
        stream.writable().await?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(
            control.push(SendAncillaryMessage::ScmRights(&fds)),
            "room for two descriptors"
        );
        let send = || {
            sendmsg(
                &*stream,
                &[IoSlice::new(message)],
                &mut control,
                SendFlags::NOSIGNAL,
            )
            .map_err(std::io::Error::from)
        };
        match stream.try_io(Interest::WRITABLE, send) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    stream.write_all(&message[sent..]).await?;
    let open = |read: std::os::unix::net::UnixStream| {
        read.set_nonblocking(true)?;
        UnixStream::from_std(read)
    };
    Ok([open(out)?, open(err)?])
}

/// Forwards an output stream line by line until every process holding it has closed it.
async fn forward(stream: UnixStream, kind: Stream, sink: OutputSink) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        // A line longer than this arrives in pieces: a function that prints without
        // newlines cannot make Basin hold it whole.
        let mut piece = (&mut reader).take(MAX_LINE_BYTES);
        match piece.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                sink(kind, text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// Sends the request (unless it went with the secrets) and reads the one reply line; the
/// connection goes to `keep` after a reply read whole.
async fn answer(
    mut reader: BufReader<UnixStream>,
    request: Option<Vec<u8>>,
    reply_tx: oneshot::Sender<Reply>,
    (max_reply, counters): (u64, Arc<RuntimeCounters>),
    keep: Option<oneshot::Sender<UnixStream>>,
) {
    if let Some(mut request) = request {
        request.push(b'\n');
        if reader.get_mut().write_all(&request).await.is_err() {
            return;
        }
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
    // A kept child says nothing after its reply until it is sent the next request, so
    // nothing read ahead is lost with the buffer.
    if let Some(keep) = keep
        && reader.buffer().is_empty()
    {
        let _ = keep.send(reader.into_inner());
    }
    let _ = reply_tx.send(reply);
}

/// The largest hello line (`{"invocation": ..., "stream": ...}`) Basin reads.
const MAX_HELLO_BYTES: u64 = 4 << 10;

/// How long Basin waits for a connection's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use std::io::{IoSliceMut, Read, Write};
    use std::mem::MaybeUninit;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::sync::{Arc, Mutex};

    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    use tokio::net::UnixListener;

    use super::{Talk, serve};
    use crate::protocol::Stream;

    const HELLO: &[u8] = b"{\"invocation\": \"inv\", \"stream\": \"child\", \"pid\": 0}\n";

    /// Connects as the child and reads what Basin hands it: the bytes of its first message
    /// and the descriptors that came with them.
    fn open_as_child(path: &std::path::Path) -> (UnixStream, Vec<u8>, Vec<OwnedFd>) {
        let mut stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        stream.write_all(HELLO).unwrap();
        let mut data = vec![0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            &stream,
            &mut [IoSliceMut::new(&mut data)],
            &mut control,
            RecvFlags::empty(),
        );
        let n = got.map_or(0, |m| m.bytes);
        let mut fds = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        data.truncate(n);
        (stream, data, fds)
    }

    /// The child's one connection: only the forked child itself gets its secrets, the request
    /// and its output streams (another process that learned the socket's path and the
    /// invocation's id gets nothing); what it writes to the streams is forwarded line by line,
    /// and its reply comes back on the connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_child_alone_gets_its_secrets_request_and_output_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("basin.sock");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let run = |pid: u32| {
            let child = crate::zygote::Forked { pid, init: None };
            let listener = UnixListener::bind(&path).unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let seen = lines.clone();
            let sink: crate::runtime::OutputSink = Arc::new(move |stream, line: &str| {
                seen.lock().unwrap().push((stream, line.to_string()));
            });
            let talk = Talk {
                request: b"{\"type\": \"request\"}".to_vec(),
                secrets: b"{\"API_KEY\": \"s3cret\"}".to_vec(),
                program: false,
                max_reply: 1 << 20,
                counters: Arc::default(),
                keep: None,
            };
            (
                tokio::spawn(serve(listener, "inv".into(), child, talk, tx, sink)),
                rx,
            )
        };
        let child =
            |path: std::path::PathBuf| tokio::task::spawn_blocking(move || open_as_child(&path));

        let (other, _) = run(u32::MAX - 1); // not this process
        let (_, data, fds) = child(path.clone()).await.unwrap();
        assert!(
            data.is_empty() && fds.is_empty(),
            "another process got {data:?} and {} descriptors",
            fds.len()
        );
        other.abort();
        std::fs::remove_file(&path).unwrap();

        let (ours, reply) = run(std::process::id());
        let (mut stream, data, fds) = child(path.clone()).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&data),
            "{\"API_KEY\": \"s3cret\"}\n{\"type\": \"request\"}\n"
        );
        let [stdout, stderr]: [OwnedFd; 2] = fds.try_into().expect("two descriptors");
        UnixStream::from(stdout).write_all(b"rows in: 3\n").unwrap();
        UnixStream::from(stderr).write_all(b"a warning\n").unwrap();
        stream
            .write_all(b"{\"status\": \"ok\", \"output\": null, \"error\": null}\n")
            .unwrap();
        let reply = tokio::time::timeout(std::time::Duration::from_secs(5), reply).await;
        assert_eq!(
            reply.expect("a reply in time").expect("a reply").status,
            "ok"
        );
        // The output streams ended when the child's ends closed (dropped above).
        tokio::time::timeout(std::time::Duration::from_secs(5), ours)
            .await
            .expect("the talk ends once the streams are closed")
            .unwrap();
        let mut seen = lines.lock().unwrap().clone();
        seen.sort_by_key(|(stream, _)| *stream == Stream::Stderr);
        assert_eq!(
            seen,
            [
                (Stream::Stdout, "rows in: 3".to_string()),
                (Stream::Stderr, "a warning".to_string())
            ]
        );
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "nothing more on the connection: {rest:?}");
    }

    /// A connection whose process has ended (and been reaped) by the time Basin takes it is
    /// refused before anything is read: its id may belong to another process by then. The
    /// request goes to the control connection that follows it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_from_a_process_that_has_ended_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("basin.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let hello = r#"{"invocation": "inv", "stream": "control"}"#;
        let gone = std::process::Command::new("python3")
            .args(["-c", &format!(
                "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                 s.sendall(b'{hello}\\n')"
            )])
            .arg(&path)
            .status()
            .unwrap();
        assert!(gone.success());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let talk = Talk {
            request: b"{\"type\": \"request\"}".to_vec(),
            secrets: b"{}".to_vec(),
            program: true,
            max_reply: 1 << 20,
            counters: Arc::default(),
            keep: None,
        };
        let child = crate::zygote::Forked {
            pid: std::process::id(),
            init: None,
        };
        let sink: crate::runtime::OutputSink = Arc::new(|_, _| {});
        let served = tokio::spawn(serve(listener, "inv".into(), child, talk, tx, sink));
        let got = tokio::task::spawn_blocking(move || {
            let mut stream = UnixStream::connect(&path).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            stream.write_all(format!("{hello}\n").as_bytes()).unwrap();
            let mut got = vec![0u8; 64];
            let n = stream.read(&mut got).unwrap_or(0);
            String::from_utf8_lossy(&got[..n]).into_owned()
        })
        .await
        .unwrap();
        assert_eq!(got, "{\"type\": \"request\"}\n");
        served.abort();
        drop(rx);
    }
}
