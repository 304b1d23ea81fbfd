//! Kept children (`[functions] reuse`): the next invocation of the same function version,
//! environment, limits and secrets runs in the process the last one ran in, with its module
//! globals; anything else gets a fresh one. Part of the `runtime` test binary.

use super::*;

/// Counts its calls in a module global and says where it runs: a token its process drew
/// when it loaded the module (in its PID namespace every process is the same number), its
/// folder, its secret, and its id as the host sees it.
const COUNTER: &str = "import os\nCALLS = []\nTOKEN = os.urandom(8).hex()\ndef count():\n    \
                       CALLS.append(1)\n    return [len(CALLS), TOKEN, os.getcwd(), \
                       os.environ.get('API_KEY'), int(os.readlink('/proc/self'))]\n";

/// Invokes `name` of `source` with the secret `API_KEY` set to `secret`.
async fn call(rt: &Runtime, source: &str, name: &str, secret: &str, limits: Limits) -> Finished {
    let env = rt.environment(&pyarrow()).await.unwrap();
    let invocation = python(env, source, name, secret, limits);
    let ws = rt.workspace().unwrap();
    rt.invoke(ws, invocation, Arc::new(|_, _| {})).await
}

async fn count(rt: &Runtime, source: &str, secret: &str, limits: Limits) -> serde_json::Value {
    json(&call(rt, source, "count", secret, limits).await)
}

#[tokio::test]
async fn the_next_invocation_of_a_function_runs_in_its_kept_process() {
    let rt = runtime(RuntimeOptions::default());
    let first = count(&rt, COUNTER, "s3cret", Limits::default()).await;
    let second = count(&rt, COUNTER, "s3cret", Limits::default()).await;
    assert_eq!(
        (&first[0], &second[0]),
        (&1.into(), &2.into()),
        "module globals persist"
    );
    assert_eq!(first[1], second[1], "one process served both");
    assert_ne!(
        first[2], second[2],
        "each invocation has a folder of its own"
    );
    assert_eq!(second[3], "s3cret");
    assert_eq!(rt.kept(), 1);

    // Another version of the function, or other secrets: never that process.
    let v2 = COUNTER.replace("CALLS = []", "CALLS = []  # v2");
    let other = count(&rt, &v2, "s3cret", Limits::default()).await;
    assert_eq!(other[0], 1);
    assert_ne!(other[1], first[1]);
    let rotated = count(&rt, COUNTER, "rotated", Limits::default()).await;
    assert_eq!((&rotated[0], &rotated[3]), (&1.into(), &"rotated".into()));
    // Other limits: a memory limit of its own.
    let limited = Limits {
        memory_bytes: Some(512 << 20),
        ..Limits::default()
    };
    assert_eq!(count(&rt, COUNTER, "s3cret", limited).await[0], 1);
    // A function that asks for a fresh process (`reuse=False`) gets one, and is not kept.
    let fresh = Limits {
        fresh: true,
        ..Limits::default()
    };
    let alone = count(&rt, COUNTER, "s3cret", fresh).await;
    assert_eq!(alone[0], 1);
    assert_ne!(alone[1], first[1]);
    let third = count(&rt, COUNTER, "s3cret", Limits::default()).await;
    assert_eq!((&third[0], &third[1]), (&3.into(), &first[1]));
}

#[tokio::test]
async fn nothing_the_last_invocation_started_or_wrote_is_left_for_the_next() {
    let rt = runtime(RuntimeOptions::default());
    let source = r#"import os, subprocess
STATE = {}
def leave():
    if not STATE:
        child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        with open("left.txt", "w") as f:
            f.write("x")
        STATE.update(pid=child.pid, cwd=os.getcwd())
        return "left"
    try:
        os.kill(STATE["pid"], 0)
        running = True
    except ProcessLookupError:
        running = False
    return [running, os.path.exists(os.path.join(STATE["cwd"], "left.txt")), os.listdir(".")]
"#;
    let first = call(&rt, source, "leave", "s3cret", Limits::default()).await;
    assert_eq!(json(&first), "left");
    drop(first); // the caller is done with the invocation: its folder goes
    let second = call(&rt, source, "leave", "s3cret", Limits::default()).await;
    assert_eq!(
        json(&second),
        serde_json::json!([false, false, []]),
        "the process it started in a session of its own ended, its folder is gone, the new one is empty"
    );
}

#[tokio::test]
async fn a_process_that_crashed_timed_out_or_broke_its_memory_limit_is_not_kept() {
    let rt = runtime(RuntimeOptions::default());
    let limits = || Limits {
        timeout: Some(Duration::from_secs(2)),
        memory_bytes: Some(400 << 20),
        ..Limits::default()
    };
    // The second call of each process misbehaves: crashes, hangs, or holds too much memory
    // on top of what the first kept (a kept process's memory counts toward each invocation).
    let source = r#"import os, time
CALLS = []
HELD = []
TOKEN = os.urandom(8).hex()
def count():
    CALLS.append(1)
    if len(CALLS) == 2:
        how = os.environ["API_KEY"]
        if how == "crash":
            os._exit(3)
        if how == "hang":
            time.sleep(60)
        if how == "memory":
            HELD.append(bytearray(300 << 20))
    else:
        HELD.append(bytearray(200 << 20))
    return [len(CALLS), TOKEN]
"#;
    for how in ["crash", "hang", "memory"] {
        let first = count(&rt, source, how, limits()).await;
        assert_eq!(first[0], 1, "{how}");
        let kept = rt.kept();
        let failed = call(&rt, source, "count", how, limits()).await;
        assert!(failed.result.is_err(), "{how}: {:?}", failed.result);
        let expected = match how {
            "crash" => InvocationStatus::Error,
            "hang" => InvocationStatus::Timeout,
            _ => InvocationStatus::Memory,
        };
        assert_eq!(failed.record.status, expected, "{how}");
        assert_eq!(rt.kept(), kept - 1, "{how}: the process was not kept");
        let next = count(&rt, source, how, limits()).await;
        assert_eq!(
            next[0], 1,
            "{how}: the next invocation ran in a fresh process"
        );
        assert_ne!(next[1], first[1], "{how}");
    }
}

#[tokio::test]
async fn a_kept_process_ends_when_idle_for_keep_warm_or_after_max_uses() {
    let rt = runtime(RuntimeOptions {
        keep_warm: Duration::from_millis(300),
        max_uses: 2,
        ..RuntimeOptions::default()
    });
    let calls = [
        count(&rt, COUNTER, "s3cret", Limits::default()).await,
        count(&rt, COUNTER, "s3cret", Limits::default()).await,
        count(&rt, COUNTER, "s3cret", Limits::default()).await,
    ];
    let counts: Vec<_> = calls.iter().map(|c| c[0].clone()).collect();
    assert_eq!(
        counts,
        [1, 2, 1],
        "a process serves two invocations at most"
    );
    assert_eq!(rt.kept(), 1);
    let pid = calls[2][4].as_u64().unwrap() as u32;
    assert!(alive(pid), "kept process {pid}");
    for _ in 0..100 {
        if rt.kept() == 0 && !alive(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rt.kept(), 0, "an idle kept process ends after keep_warm");
    assert!(!alive(pid), "kept process {pid} still running");
    assert_eq!(count(&rt, COUNTER, "s3cret", Limits::default()).await[0], 1);
}

#[tokio::test]
async fn with_reuse_off_every_invocation_gets_a_fresh_process() {
    let rt = runtime(RuntimeOptions {
        reuse: false,
        ..RuntimeOptions::default()
    });
    let first = count(&rt, COUNTER, "s3cret", Limits::default()).await;
    let second = count(&rt, COUNTER, "s3cret", Limits::default()).await;
    assert_eq!((&first[0], &second[0]), (&1.into(), &1.into()));
    assert_ne!(first[1], second[1]);
    assert_eq!(rt.kept(), 0);
}

#[tokio::test]
async fn past_max_kept_the_process_idle_longest_ends() {
    let rt = runtime(RuntimeOptions {
        max_kept: 2,
        ..RuntimeOptions::default()
    });
    let versions: Vec<String> = (0..3)
        .map(|v| COUNTER.replace("CALLS = []", &format!("CALLS = []  # v{v}")))
        .collect();
    let mut first = Vec::new();
    for source in &versions {
        first.push(count(&rt, source, "s3cret", Limits::default()).await);
    }
    assert_eq!(rt.kept(), 2, "three functions ran, two processes wait");
    let counters = &rt.options().counters;
    let gauge = counters
        .kept_processes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(gauge, 2);
    // The first function's process was idle longest: it ended; the last one's waits.
    let v0 = count(&rt, &versions[0], "s3cret", Limits::default()).await;
    assert_eq!(v0[0], 1);
    assert_ne!(v0[1], first[0][1]);
    let v2 = count(&rt, &versions[2], "s3cret", Limits::default()).await;
    assert_eq!((&v2[0], &v2[1]), (&2.into(), &first[2][1]));
}
