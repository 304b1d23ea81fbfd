//! The escape suite's limits (issue #14): a function trying to take more than its share
//! (processes, its folder, open files, memory no process maps, its reply, the CPU). Part of
//! the `runtime` test binary (tests/runtime.rs), beside the escapes whose helpers it uses.

use super::escapes::{confined, invoke_program, rt_counter, survivors};
use super::*;
use std::sync::atomic::Ordering;

#[tokio::test]
async fn a_fork_bomb_is_bounded_and_its_processes_end_with_it() {
    let rt = confined(RuntimeOptions {
        max_processes: 48,
        ..RuntimeOptions::default()
    });
    let source = r#"
import os, time
def bomb():
    r, w = os.pipe()
    forks, error = 0, None
    while forks < 10000:
        try:
            pid = os.fork()
        except OSError as e:
            error = type(e).__name__
            break
        if pid == 0:
            me = os.readlink("/proc/self")
            print(me, flush=True)
            os.write(w, (me + "\n").encode())
            time.sleep(600)
            os._exit(0)
        forks += 1
    os.close(w)
    pids = []
    with os.fdopen(r) as f:
        for _ in range(forks):
            pids.append(int(f.readline()))
    return {"forks": forks, "error": error, "pids": pids}
"#;
    let (finished, lines) = invoke(&rt, source, "bomb", None, Limits::default()).await;
    // Unprivileged, the rlimit refuses the 48th fork; as root (which rlimits do not
    // bind) Basin counts the processes from outside and stops the invocation.
    let pids: Vec<u32> = match &finished.result {
        Ok(_) => {
            let v = json(&finished);
            assert_eq!(v["error"], "BlockingIOError", "{v}");
            assert!((1..48).contains(&v["forks"].as_u64().unwrap()), "{v}");
            serde_json::from_value(v["pids"].clone()).unwrap()
        }
        Err(e) => {
            assert!(
                e.message
                    .contains("started more than 48 processes ([functions] max_processes)"),
                "{e}"
            );
            assert_eq!(rt_counter(&rt).over_processes.load(Ordering::Relaxed), 1);
            lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|(_, l)| l.parse().ok())
                .collect()
        }
    };
    let survivors = survivors(pids).await;
    assert!(
        survivors.is_empty(),
        "outlived the invocation: {survivors:?}"
    );
    // Basin is fine: the next invocation runs.
    let (next, _) = invoke(
        &rt,
        "def ok():\n    return 1\n",
        "ok",
        None,
        Limits::default(),
    )
    .await;
    assert_eq!(json(&next), 1);
}

#[tokio::test]
async fn filling_the_folder_is_refused_at_the_cap() {
    let rt = confined(RuntimeOptions {
        max_folder_size: 8 << 20,
        ..RuntimeOptions::default()
    });
    let one_big_file = r#"
def big():
    try:
        with open("big.bin", "wb") as f:
            f.write(b"x" * (16 << 20))
        return "allowed"
    except OSError as e:
        return e.strerror
"#;
    let (finished, _) = invoke(&rt, one_big_file, "big", None, Limits::default()).await;
    assert_eq!(json(&finished), "File too large");
    let many_files = r#"
import time
def many():
    for i in range(12):
        with open(f"part-{i}.bin", "wb") as f:
            f.write(b"x" * (1 << 20))
    time.sleep(30)
"#;
    let (finished, _) = invoke(&rt, many_files, "many", None, Limits::default()).await;
    let e = finished.result.as_ref().unwrap_err();
    assert!(
        e.message
            .contains("over the limit of 8 MiB ([functions] max_folder_size)"),
        "{e}"
    );
    assert_eq!(finished.record.status, InvocationStatus::Memory);
    assert_eq!(rt_counter(&rt).over_folder.load(Ordering::Relaxed), 1);
}

/// `[functions] max_open_files` at its lowest (16) still leaves a function room to run, and
/// binds it: the worker's own descriptors (the Landlock rules' paths it opened once for every
/// spare) are closed before the limit applies.
#[tokio::test]
async fn the_open_files_limit_binds_the_function_not_the_walls() {
    let rt = confined(RuntimeOptions {
        max_open_files: 16,
        ..RuntimeOptions::default()
    });
    let source = r#"
import os
def many():
    opened = []
    try:
        while len(opened) < 100:
            opened.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as e:
        return {"opened": len(opened), "error": type(e).__name__}
    return {"opened": len(opened), "error": None}
"#;
    let (finished, _) = invoke(&rt, source, "many", None, Limits::default()).await;
    let v = json(&finished);
    assert_eq!(v["error"], "OSError", "{v}");
    assert!((1..16).contains(&v["opened"].as_u64().unwrap()), "{v}");
}

/// Functions run `[functions] nice` steps below Basin's CPU priority, and none can climb
/// back: not by `setpriority`, not by raising `RLIMIT_NICE` first, not by a real-time
/// policy, and not by a child. Their
/// processes are in the functions' CPU group too, which a new session does not leave (seen
/// from outside: the function cannot read its own cgroup).
#[tokio::test]
async fn a_function_runs_below_basins_cpu_priority_and_cannot_raise_it() {
    let rt = confined(RuntimeOptions {
        nice: 7,
        ..RuntimeOptions::default()
    });
    let source = r#"
import os, resource, subprocess, sys
def climb():
    tried = {}
    for name, attempt in (
        ("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, 0, 0)),
        ("nice", lambda: os.nice(-1)),
        ("rlimit", lambda: resource.setrlimit(resource.RLIMIT_NICE, (40, 40))),
        ("realtime", lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))),
    ):
        try:
            attempt()
            tried[name] = "done"
        except (OSError, ValueError) as e:
            tried[name] = type(e).__name__
    child = subprocess.run([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(4)  # climber"])
    return {"nice": os.getpriority(os.PRIO_PROCESS, 0), "tried": tried}
"#;
    let basin = rustix::process::getpriority_process(None).unwrap();
    let below = (basin + 7).min(19);
    let runtime = rt.clone();
    let climb =
        tokio::spawn(
            async move { invoke(&runtime, source, "climb", None, Limits::default()).await },
        );
    // The function's child, in a session of its own: its nice and its CPU group.
    let mut seen = None;
    for _ in 0..200 {
        seen = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .find_map(|entry| {
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                String::from_utf8_lossy(&cmdline)
                    .contains("# climber")
                    .then(|| {
                        let stat =
                            std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                        let fields: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 2..]
                            .split(' ')
                            .collect();
                        let cgroup = std::fs::read_to_string(entry.path().join("cgroup"))
                            .unwrap_or_default();
                        (fields.get(16).and_then(|n| n.parse::<i32>().ok()), cgroup)
                    })
            });
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (child_nice, cgroup) = seen.expect("the function's child ran");
    assert_eq!(child_nice, Some(below));
    // v1: the cpu hierarchy's `basin` group; v2: the invocation's group, under `basin`.
    assert!(rt.walls().cpu.is_ok(), "{:?}", rt.walls().cpu);
    let cpu = cgroup
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "cpu"))
        })
        .or_else(|| cgroup.lines().find(|l| l.starts_with("0::")))
        .unwrap_or_default();
    assert!(
        cpu.ends_with("/basin") || cpu.contains("/basin/"),
        "{cgroup}"
    );

    let (finished, _) = climb.await.unwrap();
    let v = json(&finished);
    assert_eq!(v["nice"], below as i64, "{v}");
    assert_eq!(v["tried"]["setpriority"], "PermissionError", "{v}");
    assert_eq!(v["tried"]["nice"], "PermissionError", "{v}");
    assert_ne!(v["tried"]["rlimit"], "done", "{v}");
    assert_eq!(v["tried"]["realtime"], "PermissionError", "{v}");
}

/// A reply is read up to 64 MiB: a function streaming bytes without a newline on its control
/// connection fails with an error instead of making Basin hold them all.
#[tokio::test]
async fn a_reply_past_its_cap_fails_the_invocation() {
    let rt = confined(RuntimeOptions::default());
    let finished = invoke_program(&rt, "flood.py", r#"#!/usr/bin/env python3
import json, os, socket
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["BASIN_SOCKET"])
sock.sendall((json.dumps({"invocation": os.environ["BASIN_INVOCATION"], "stream": "control"}) + "\n").encode())
sock.makefile("rb").readline()
chunk = b"x" * (1 << 20)
try:
    for _ in range(80):
        sock.sendall(chunk)
except OSError:
    pass
"#).await;
    let e = finished.result.as_ref().expect_err("refused");
    assert!(
        e.message
            .contains("reply is over 64 MiB ([functions] max_reply_size"),
        "{e}"
    );
    assert_eq!(rt_counter(&rt).over_reply.load(Ordering::Relaxed), 1);
}

/// Memory no process's resident count shows (the review held 1.5 GiB under a 200 MiB limit
/// this way): a memfd, a file unlinked while open, shared anonymous memory that short-lived
/// children fill a part each of and leave. The `memory` wall (a cgroup per invocation) counts them all.
#[tokio::test]
async fn memory_held_outside_any_process_is_stopped_at_the_limit() {
    let rt = confined(RuntimeOptions::default());
    let ways = [
        (
            "memfd",
            "fd = os.memfd_create('hoard')\n    for _ in range(400):\n        os.write(fd, chunk)",
        ),
        (
            "unlinked",
            "f = open('hoard.bin', 'wb')\n    os.unlink('hoard.bin')\n    for _ in range(400):\n        f.write(chunk)\n    f.flush()",
        ),
        (
            "shared",
            "m = mmap.mmap(-1, 400 << 20, flags=mmap.MAP_SHARED)\n    for part in range(4):\n        if os.fork() == 0:\n            for i in range(part * (100 << 20), (part + 1) * (100 << 20), 4096):\n                m[i] = 1\n            os._exit(0)\n        os.wait()",
        ),
    ];
    for (name, hoard) in ways {
        let source = format!(
            "import mmap, os, time\ndef {name}():\n    chunk = b'x' * (1 << 20)\n    {hoard}\n    time.sleep(2)\n    return 'held'\n"
        );
        let limits = Limits {
            memory_bytes: Some(200 << 20),
            ..Limits::default()
        };
        let (finished, _) = invoke(&rt, &source, name, None, limits).await;
        let e = finished.result.as_ref().err();
        assert_eq!(
            finished.record.status,
            InvocationStatus::Memory,
            "{name}: {e:?}"
        );
        assert!(
            e.is_some_and(|e| e.message.contains("memory limit of 200 MiB")
                || e.message.contains("over its limit of 200 MiB")),
            "{name}: {e:?}"
        );
        assert!(
            finished.record.peak_memory_bytes >= 190 << 20,
            "{name}: {}",
            finished.record.peak_memory_bytes
        );
    }
}
