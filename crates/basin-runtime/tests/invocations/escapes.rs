//! The escape suite (issue #14): a function trying what a hostile one would. Part of the
//! `runtime` test binary (tests/runtime.rs), beside the invocation tests whose helpers
//! (invocations/mod.rs) it uses.

use super::*;
use std::sync::atomic::Ordering;

/// Which of `pids` are still alive after a grace of up to 10 s (a killed process is reaped
/// by the kernel a moment after its invocation returns; 2 s was once too short while the
/// other tests built environments on both cores).
pub(super) async fn survivors(pids: Vec<u32>) -> Vec<u32> {
    for _ in 0..200 {
        if pids.iter().all(|p| !alive(*p)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pids.into_iter().filter(|p| alive(*p)).collect()
}

/// Runs the executable script `code` (saved as `name`) as a program that speaks the
/// protocol itself, in the pyarrow environment, with no event, secrets or input.
pub(super) async fn invoke_program(rt: &Runtime, name: &str, code: &str) -> Finished {
    let (invocation, _dir) = program(rt, name, code).await;
    let ws = rt.workspace().unwrap();
    rt.invoke(ws, invocation, Arc::new(|_, _| {})).await
}

/// The invocation of `code` as a program (see `invoke_program`), and the folder holding it.
pub(super) async fn program(
    rt: &Runtime,
    name: &str,
    code: &str,
) -> (Invocation, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join(name);
    std::fs::write(&program, code).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let invocation = Invocation {
        function: name.into(),
        target: Target::Program {
            argv: vec![program.display().to_string()],
        },
        env: rt.environment(&pyarrow()).await.unwrap(),
        preload: vec![],
        event: serde_json::Value::Null,
        params: serde_json::Value::Null,
        secrets: BTreeMap::new(),
        limits: Limits::default(),
        concurrency: None,
    };
    (invocation, dir)
}

pub(super) fn confined(options: RuntimeOptions) -> Runtime {
    let rt = runtime(options);
    assert!(
        rt.walls().missing().next().is_none(),
        "this machine must build every wall for these tests: {}",
        rt.walls().summary()
    );
    rt
}

/// Regression: the function used to be its namespace's init, which signals from inside
/// the namespace cannot kill, so killing itself did nothing.
#[tokio::test]
async fn a_function_that_kills_itself_is_reported_killed() {
    let rt = confined(RuntimeOptions::default());
    let source = "import os, signal\ndef crash():\n    os.kill(os.getpid(), signal.SIGKILL)\n";
    let limits = Limits {
        timeout: Some(Duration::from_secs(20)),
        ..Limits::default()
    };
    let (finished, _) = invoke(&rt, source, "crash", None, limits).await;
    let e = finished.result.as_ref().unwrap_err();
    assert!(e.message.contains("was killed by signal 9"), "{e}");
}

#[tokio::test]
async fn a_child_that_leaves_the_session_is_gone_when_the_invocation_ends() {
    let rt = confined(RuntimeOptions::default());
    let source = r#"
import subprocess, sys
def escape():
    child = subprocess.Popen([sys.executable, "-c",
        "import os, time; print(os.readlink('/proc/self'), flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, start_new_session=True)
    return int(child.stdout.readline())
"#;
    let (finished, _) = invoke(&rt, source, "escape", None, Limits::default()).await;
    let pid = json(&finished).as_u64().unwrap() as u32;
    // Killed when the invocation ends (Basin waits for their end only when it reads
    // a table the function wrote; otherwise the kernel finishes them just after).
    assert!(
        survivors(vec![pid]).await.is_empty(),
        "the setsid child {pid} outlived its invocation"
    );
}

pub(super) fn rt_counter(rt: &Runtime) -> &basin_runtime::RuntimeCounters {
    &rt.options().counters
}

#[tokio::test]
async fn an_output_swapped_for_a_symlink_is_refused() {
    let rt = confined(RuntimeOptions::default());
    let finished = invoke_program(
        &rt,
        "swap.py",
        r#"#!/usr/bin/env python3
import json, os, socket
import pyarrow as pa
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["BASIN_SOCKET"])
sock.sendall((json.dumps({"invocation": os.environ["BASIN_INVOCATION"], "stream": "control"}) + "\n").encode())
request = json.loads(sock.makefile("rb").readline())
table = pa.table({"x": [1, 2, 3]})
with pa.OSFile("elsewhere.arrow", "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
    writer.write_table(table)
path = request["output"]["path"]
os.symlink(os.path.abspath("elsewhere.arrow"), path)
sock.sendall((json.dumps({"type": "result", "status": "ok", "output": {"kind": "table", "path": path}}) + "\n").encode())
"#,
    )
    .await;
    let e = finished
        .result
        .as_ref()
        .expect_err("a symlinked output is refused");
    assert!(e.message.contains("is not a regular file"), "{e}");
}

#[tokio::test]
async fn another_invocations_folder_basins_folders_and_secrets_are_closed() {
    // A descriptor whoever started Basin left open (not close-on-exec), such as a pipe to a
    // log collector: Basin's worker inherits it, and no function may write to it.
    let (leaked_r, leaked_w) = std::io::pipe().unwrap();
    rustix::io::fcntl_setfd(&leaked_w, rustix::io::FdFlags::empty()).unwrap();
    let rt = confined(RuntimeOptions::default());
    let mut other = rt.workspace().unwrap();
    other
        .write_input(
            "orders",
            orders().schema(),
            futures::stream::iter(vec![Ok(orders())]),
        )
        .await
        .unwrap();
    let other_input = other.input_path("orders").unwrap().to_path_buf();
    let source = format!(
        r#"
import os
{ATTEMPT}
def peek():
    scratch = os.path.dirname(os.path.dirname({other_input:?}))
    return {{
        "other_input": attempt(lambda: open({other_input:?}, "rb").read()),
        "list_scratch": attempt(lambda: os.listdir(scratch)),
        "own_folder": attempt(lambda: os.listdir(os.path.dirname(os.getcwd()))),
        "shadow": attempt(lambda: open("/etc/shadow").read()),
        "passwd": attempt(lambda: open("/etc/passwd").read()),
        # What the process holds open: the worker opens the paths of the Landlock rules
        # once for every spare, and none of those descriptors may reach the function.
        "open": [os.readlink(f"/proc/self/fd/{{fd}}") for fd in os.listdir("/proc/self/fd")
                 if os.path.exists(f"/proc/self/fd/{{fd}}")],
    }}
"#
    );
    let (finished, _) = invoke(&rt, &source, "peek", None, Limits::default()).await;
    let v = json(&finished);
    assert_eq!(v["other_input"], "PermissionError", "{v}");
    assert_eq!(v["list_scratch"], "PermissionError", "{v}");
    assert_eq!(v["own_folder"], "allowed", "{v}");
    // Even when Basin runs as root: only what any user may read of /etc.
    assert_ne!(v["shadow"], "allowed", "{v}");
    assert_eq!(v["passwd"], "allowed", "{v}");
    let open: Vec<&str> = v["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        !open
            .iter()
            .any(|p| ["/etc", "/usr", "/lib", "/proc", "pipe:"]
                .iter()
                .any(|d| p.starts_with(d))),
        "{open:?}"
    );
    drop((leaked_r, leaked_w));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(other_input.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "invocation folders are private");
}

#[tokio::test]
async fn strict_isolation_refuses_when_a_wall_is_off_and_best_effort_says_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let source = format!(
        "import socket\ndef call():\n    socket.create_connection((\"127.0.0.1\", {port}), timeout=2).close()\n    return \"reached\"\n"
    );
    let strict = runtime(RuntimeOptions {
        isolation: Some(basin_runtime::Isolation::Strict),
        disable_walls: vec!["network".into()],
        ..RuntimeOptions::default()
    });
    let (finished, _) = invoke(&strict, &source, "call", None, Limits::default()).await;
    let e = finished.result.as_ref().unwrap_err();
    assert!(
        e.message.contains("was not run: isolation is strict")
            && e.message
                .contains("network: turned off by [functions] disable_walls"),
        "{e}"
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap_or("")
            .contains("isolation = \"best-effort\"")
    );
    assert_eq!(rt_counter(&strict).refused.load(Ordering::Relaxed), 1);

    let relaxed = runtime(RuntimeOptions {
        isolation: Some(basin_runtime::Isolation::BestEffort),
        disable_walls: vec!["network".into()],
        ..RuntimeOptions::default()
    });
    let (finished, _) = invoke(&relaxed, &source, "call", None, Limits::default()).await;
    assert_eq!(json(&finished), "reached");
    assert!(
        finished
            .unconfined
            .iter()
            .any(|m| m.starts_with("network: turned off")),
        "{:?}",
        finished.unconfined
    );
}

#[tokio::test]
async fn a_scratch_folder_in_tmp_is_bound_back_alone_under_the_empty_tmp() {
    // Spares cover /tmp before their request names the invocation's folder; that folder is
    // then bound back in, alone: its input, its workdir and Basin's socket work, while a
    // service's socket beside the invocation folders stays out of reach.
    let scratch = tempfile::Builder::new()
        .prefix("b")
        .tempdir_in("/tmp")
        .unwrap();
    let service = scratch.path().join("service.sock");
    let _service = std::os::unix::net::UnixListener::bind(&service).unwrap();
    let rt = confined(RuntimeOptions {
        scratch: Some(scratch.path().to_path_buf()),
        ..RuntimeOptions::default()
    });
    let source = format!(
        r#"
import os, socket
{ATTEMPT}
def look(orders):
    return {{
        "rows": orders.num_rows,
        "workdir": attempt(lambda: open("scratch.txt", "w").write("x")),
        "service": attempt(lambda: socket.socket(socket.AF_UNIX).connect({service:?})),
    }}
"#
    );
    for _ in 0..2 {
        // The second runs in a spare built while the first ran.
        let (finished, _) = invoke(&rt, &source, "look", Some(orders()), Limits::default()).await;
        let v = json(&finished);
        assert_eq!(v["rows"], 3, "{v}");
        assert_eq!(v["workdir"], "allowed", "{v}");
        assert_ne!(v["service"], "allowed", "{v}");
        assert!(finished.unconfined.is_empty(), "{:?}", finished.unconfined);
    }
}

/// Secrets never pass through the worker: a spare forked after an invocation would copy
/// whatever the worker read for it (its request's locals, its heap). Each function finds its
/// own secret, and none in the frames it was forked from.
#[tokio::test]
async fn a_function_finds_no_secret_in_the_worker_it_was_forked_from() {
    let rt = confined(RuntimeOptions::default());
    let source = r#"
import os, sys
def peek():
    zygote = []
    frame = sys._getframe()
    while frame:
        if frame.f_code.co_name == "zygote":
            zygote.append(repr(frame.f_locals))
        frame = frame.f_back
    return {"own": os.environ.get("API_KEY"), "zygote": zygote}
"#;
    // The second is forked from a worker that handled the first.
    for _ in 0..2 {
        let (finished, _) = invoke(&rt, source, "peek", None, Limits::default()).await;
        let v = json(&finished);
        assert_eq!(v["own"], "s3cret", "{v}");
        let zygote = v["zygote"].as_array().unwrap();
        assert_eq!(zygote.len(), 1, "{v}");
        assert!(!zygote[0].as_str().unwrap().contains("s3cret"), "{v}");
    }
}

/// A session keyring Basin was started with (a login's, a service's) is not the functions':
/// each invocation joins a new one, so no key passes from one invocation to the next.
#[tokio::test]
async fn no_key_passes_between_invocations_through_a_session_keyring() {
    // As a login would: this process, and the workers it starts, share a session keyring.
    let joined = unsafe { libc::syscall(libc::SYS_keyctl, 1, c"basin-test".as_ptr()) };
    assert!(joined >= 0, "keyctl(JOIN_SESSION_KEYRING) failed here");
    let rt = confined(RuntimeOptions::default());
    let source = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
SESSION, SEARCH = -3, 10
def put():
    key = libc.syscall(ADD_KEY, b"user", b"basin-left", b"left by an invocation", 21, SESSION)
    return {"key": key}
def get():
    found = libc.syscall(KEYCTL, SEARCH, SESSION, b"user", b"basin-left", 0)
    return {"found": found}
"#;
    let (finished, _) = invoke(&rt, source, "put", None, Limits::default()).await;
    assert!(
        json(&finished)["key"].as_i64().unwrap() > 0,
        "add_key failed"
    );
    let (finished, _) = invoke(&rt, source, "get", None, Limits::default()).await;
    assert_eq!(
        json(&finished)["found"],
        -1,
        "a key passed between invocations"
    );
}

/// A function that learned another invocation's socket and id (here from the test; an
/// internet function can read them in /proc/net/unix) connects to it before its program
/// does: once with a hello for its control stream, and once saying nothing, to hold Basin's
/// accept loop up. Basin refuses both before reading, as they come from outside the
/// invocation's PID namespace: the victim gets its request and ends while the thief still
/// holds its idle connection.
#[tokio::test]
async fn another_invocations_control_stream_is_refused_to_a_function() {
    let rt = confined(RuntimeOptions::default());
    let (victim, _dir) = program(&rt, "late.py", r#"#!/usr/bin/env python3
import json, os, socket, time
print(os.environ["BASIN_SOCKET"], os.environ["BASIN_INVOCATION"], flush=True)
time.sleep(3)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["BASIN_SOCKET"])
sock.sendall((json.dumps({"invocation": os.environ["BASIN_INVOCATION"], "stream": "control"}) + "\n").encode())
request = json.loads(sock.makefile("rb").readline())
sock.sendall((json.dumps({"type": "result", "status": "ok", "output": {"kind": "json", "value": request["function"]["name"]}}) + "\n").encode())
"#).await;
    let (said, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let sink: basin_runtime::OutputSink = Arc::new(move |_, line: &str| {
        let _ = said.send(line.to_string());
    });
    let ws = rt.workspace().unwrap();
    let runtime = rt.clone();
    let victim = tokio::spawn(async move { runtime.invoke(ws, victim, sink).await });
    let line = tokio::time::timeout(Duration::from_secs(60), heard.recv())
        .await
        .unwrap()
        .unwrap();
    let (socket, id) = line.split_once(' ').unwrap();
    let thief = format!(
        r#"
import json, socket, time
def thief():
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect({socket:?})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect({socket:?})
        sock.sendall((json.dumps({{"invocation": {id:?}, "stream": "control"}}) + "\n").encode())
        got = sock.makefile("rb").readline().decode()
    except OSError as e:
        got = f"refused: {{e}}"
    print("stole:", got, flush=True)
    time.sleep(60)  # holding the idle connection, until its timeout stops it
"#
    );
    let runtime = rt.clone();
    let thief = tokio::spawn(async move {
        let limits = Limits {
            timeout: Some(Duration::from_secs(20)),
            ..Limits::default()
        };
        invoke(&runtime, &thief, "thief", None, limits).await
    });
    let victim = victim.await.unwrap();
    assert_eq!(
        json(&victim),
        "late.py",
        "{:?}",
        victim.result.as_ref().err()
    );
    assert!(
        !thief.is_finished(),
        "the victim ended only once the thief's idle connection was gone"
    );
    let (stopped, lines) = thief.await.unwrap();
    assert_eq!(stopped.record.status, InvocationStatus::Timeout);
    let lines = lines.lock().unwrap().clone();
    let stole: Vec<_> = lines
        .iter()
        .filter(|(_, l)| l.starts_with("stole:"))
        .collect();
    assert_eq!(stole.len(), 1, "{lines:?}");
    assert!(
        !stole[0].1.contains("request"),
        "another function took the request: {stole:?}"
    );
}
