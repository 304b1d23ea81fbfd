//! Warm workers: started ahead of an invocation, reused without sharing state, bounded in
//! how many run at once; and a program without the SDK that speaks the protocol. Part of the
//! `runtime` test binary (tests/runtime.rs).

use super::*;

/// Callers start the worker while they scan the inputs: the invocation then uses that
/// one, and a worker is started once however often it is asked for.
#[tokio::test]
async fn a_worker_started_ahead_serves_the_invocation() {
    let rt = runtime(RuntimeOptions::default());
    let env = rt.environment(&pyarrow()).await.unwrap();
    // The environment's package, then the modules the function's file imports: a module of
    // a loaded package is imported ahead, the user's own modules are not.
    let preload: Vec<String> = ["pyarrow", "pyarrow.compute", "helpers", "helpers.io"]
        .map(String::from)
        .to_vec();
    rt.warm(&env, &preload, false);
    rt.warm(&env, &preload, false);
    // `workers` waits for one still starting.
    let workers = rt.workers().await;
    assert_eq!(workers.len(), 1);
    rt.warm(&env, &preload, false);
    let source = "import sys\ndef f(event):\n    \
                  return [event['n']] + [m in sys.modules for m in \
                  ('pyarrow.compute', 'pyarrow.dataset', 'helpers')]\n";
    let (finished, _) = invoke(&rt, source, "f", None, Limits::default()).await;
    assert_eq!(json(&finished), serde_json::json!([3, true, false, false]));
    assert_eq!(
        rt.workers().await,
        workers,
        "the invocation used the worker started ahead"
    );
}

#[tokio::test]
async fn warm_workers_are_reused_without_sharing_state_then_exit_when_idle() {
    // `reuse` off: a fresh child per invocation (kept children: kept.rs).
    let rt = runtime(RuntimeOptions {
        keep_alive: Duration::from_millis(400),
        reuse: false,
        ..RuntimeOptions::default()
    });
    let source = "import json\ndef leak():\n    seen = hasattr(json, 'leaked')\n    json.leaked = True\n    return seen\n";
    let (first, _) = invoke(&rt, source, "leak", None, Limits::default()).await;
    let workers = rt.workers().await;
    assert_eq!(workers.len(), 1);
    let (second, _) = invoke(&rt, source, "leak", None, Limits::default()).await;
    assert_eq!(
        rt.workers().await,
        workers,
        "the warm worker serves the second call"
    );
    assert_eq!(
        (json(&first), json(&second)),
        (serde_json::json!(false), serde_json::json!(false))
    );
    for _ in 0..100 {
        if rt.workers().await.is_empty() && !alive(workers[0]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rt.workers().await.is_empty(),
        "idle workers exit after the keep-alive"
    );
    assert!(
        !alive(workers[0]),
        "worker process {} still running",
        workers[0]
    );
}

#[tokio::test]
async fn parallel_invocations_respect_the_concurrency_limit() {
    let rt = runtime(RuntimeOptions {
        max_concurrency: 2,
        ..RuntimeOptions::default()
    });
    let source = "import time\ndef nap():\n    start = time.time()\n    time.sleep(0.4)\n    return [start, time.time()]\n";
    let calls = (0..5).map(|_| invoke(&rt, source, "nap", None, Limits::default()));
    let spans: Vec<(f64, f64)> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|(f, _)| serde_json::from_value(json(f)).unwrap())
        .collect();
    let overlap = |t: f64| spans.iter().filter(|(s, e)| *s <= t && t < *e).count();
    let most = spans.iter().map(|(s, _)| overlap(*s)).max().unwrap();
    assert_eq!(
        most, 2,
        "at most two at once, and two did run together: {spans:?}"
    );
}

#[tokio::test]
async fn a_program_without_the_sdk_speaks_the_protocol() {
    let rt = runtime(RuntimeOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("shout.py");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/shout.py"),
        &program,
    )
    .unwrap();
    let env = rt.environment(&pyarrow()).await.unwrap();
    let mut ws = rt.workspace().unwrap();
    ws.write_input(
        "orders",
        orders().schema(),
        futures::stream::iter(vec![Ok(orders())]),
    )
    .await
    .unwrap();
    let invocation = Invocation {
        function: "shout.py".into(),
        target: Target::Program {
            argv: vec![program.display().to_string()],
        },
        env,
        preload: vec![],
        event: serde_json::json!({"column": "status", "suffix": "!"}),
        params: serde_json::Value::Null,
        secrets: BTreeMap::new(),
        limits: Limits::default(),
        concurrency: None,
    };
    let finished = rt.invoke(ws, invocation, Arc::new(|_, _| {})).await;
    let Ok(Output::Table { batches, .. }) = &finished.result else {
        panic!("{:?}", finished.result.as_ref().err());
    };
    let status = batches[0]
        .column_by_name("status")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(
        status.iter().flatten().collect::<Vec<_>>(),
        ["O!", "F!", "O!"]
    );
    assert_eq!(status.len(), 3);
    assert_eq!(finished.record.rows_out, 3);
}
