//! Invocations, with their helpers: what a function reads and returns, how it fails, and
//! its limits. Part of the `runtime` test binary (tests/runtime.rs); the topics below share
//! these helpers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use basin_core::InvocationStatus;
use basin_runtime::{
    EnvCache, EnvSpec, Finished, Invocation, Limits, Output, Runtime, RuntimeOptions, Stream,
    Target,
};

/// Environments shared by these tests (built once per machine, like a user's cache).
fn shared_envs() -> EnvCache {
    let root = std::env::temp_dir().join("basin-runtime-tests");
    EnvCache::new(root.join("envs"), root.join("tools"))
}

fn runtime(options: RuntimeOptions) -> Runtime {
    Runtime::new(shared_envs(), options).unwrap()
}

fn pyarrow() -> EnvSpec {
    EnvSpec::new("3.11").with_package("pyarrow", "26.0.1")
}

type Lines = Arc<Mutex<Vec<(Stream, String)>>>;

async fn invoke(
    rt: &Runtime,
    source: &str,
    name: &str,
    input: Option<RecordBatch>,
    limits: Limits,
) -> (Finished, Lines) {
    invoke_reading(rt, source, name, input, limits, false).await
}

/// `invoke`, for a caller that reads the table's batches only when `by_reference`
/// (`Workspace::tables_by_reference`).
async fn invoke_reading(
    rt: &Runtime,
    source: &str,
    name: &str,
    input: Option<RecordBatch>,
    limits: Limits,
    by_reference: bool,
) -> (Finished, Lines) {
    let env = rt.environment(&pyarrow()).await.unwrap();
    let mut ws = rt.workspace().unwrap();
    if by_reference {
        ws.tables_by_reference();
    }
    if let Some(batch) = input {
        let schema = batch.schema();
        ws.write_input("orders", schema, futures::stream::iter(vec![Ok(batch)]))
            .await
            .unwrap();
    }
    let invocation = Invocation {
        event: serde_json::json!({"n": 3}),
        ..python(env, source, name, "s3cret", limits)
    };
    let lines: Lines = Arc::default();
    let seen = lines.clone();
    let finished = rt
        .invoke(
            ws,
            invocation,
            Arc::new(move |s, l| seen.lock().unwrap().push((s, l.to_string()))),
        )
        .await;
    (finished, lines)
}

/// Function `name` of `source` (as /project/fn.py) in `env`, with the secret `API_KEY`.
fn python(
    env: basin_runtime::Env,
    source: &str,
    name: &str,
    secret: &str,
    limits: Limits,
) -> Invocation {
    Invocation {
        function: format!("fn.py:{name}"),
        target: Target::Python {
            file: PathBuf::from("/project/fn.py"),
            name: name.into(),
            source: source.into(),
        },
        env,
        preload: vec!["pyarrow".into()],
        event: serde_json::Value::Null,
        params: serde_json::Value::Null,
        secrets: BTreeMap::from([("API_KEY".into(), secret.into())]),
        limits,
        concurrency: None,
    }
}

fn orders() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["O", "F", "O"])),
        ],
    )
    .unwrap()
}

/// Python that runs `what` and says "allowed" or the name of the OSError it raised.
const ATTEMPT: &str = r#"def attempt(what):
    try:
        what()
        return "allowed"
    except OSError as e:
        return type(e).__name__"#;

fn json(finished: &Finished) -> serde_json::Value {
    match &finished.result {
        Ok(Output::Json(v)) => v.clone(),
        other => panic!("expected JSON, got {other:?}"),
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'))
        .unwrap_or(false)
}

#[tokio::test]
async fn a_function_reads_its_input_and_returns_a_table_with_metering() {
    let rt = runtime(RuntimeOptions::default());
    let source = r#"
import pyarrow.compute as pc
def open_orders(orders, event):
    print("rows in:", orders.num_rows)
    table = orders.filter(pc.equal(orders["status"], "O"))
    return table.append_column("n", pc.multiply(table["id"], event["n"]))
"#;
    let (finished, lines) = invoke(
        &rt,
        source,
        "open_orders",
        Some(orders()),
        Limits::default(),
    )
    .await;
    let Ok(Output::Table { schema, batches }) = &finished.result else {
        panic!("{:?}", finished.result.as_ref().err());
    };
    assert_eq!(schema.field(2).name(), "n");
    let n = batches[0]
        .column(2)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(n.values(), &[3, 9]);
    let r = &finished.record;
    assert_eq!(
        (r.rows_in, r.rows_out, r.status),
        (3, 2, InvocationStatus::Ok)
    );
    assert!(r.bytes_in > 0 && r.bytes_out > 0 && r.duration_ms > 0.0 && r.cpu_ms > 0.0);
    assert!(r.peak_memory_bytes > 1 << 20, "{}", r.peak_memory_bytes);
    assert_eq!(r.function, "fn.py:open_orders");
    assert!(finished.output_file().unwrap().is_file());
    assert!(
        lines
            .lock()
            .unwrap()
            .contains(&(Stream::Stdout, "rows in: 3".to_string())),
        "{lines:?}"
    );
}

#[tokio::test]
async fn an_exception_names_the_function_the_user_line_and_the_traceback() {
    let rt = runtime(RuntimeOptions::default());
    let source =
        "def helper(x):\n    return x / 0\n\ndef broken(event):\n    return helper(event['n'])\n";
    let (finished, _) = invoke(&rt, source, "broken", None, Limits::default()).await;
    let e = finished.result.as_ref().unwrap_err();
    assert!(
        e.message
            .contains("function `fn.py:broken` raised ZeroDivisionError at /project/fn.py:2"),
        "{e}"
    );
    assert!(
        e.message.contains("line 5, in broken") && e.message.contains("return x / 0"),
        "{e}"
    );
    assert!(
        !e.message.contains("_worker.py"),
        "Basin's frames are not the user's: {e}"
    );
    assert_eq!(finished.record.status, InvocationStatus::Error);
    assert!(
        finished
            .record
            .error
            .as_deref()
            .unwrap()
            .contains("ZeroDivisionError")
    );
}

#[tokio::test]
async fn a_timeout_kills_the_function_and_everything_it_started() {
    let rt = runtime(RuntimeOptions::default());
    let source = r#"
import subprocess, sys, time
def slow():
    # The child says its id as the host sees it (inside, ids are the namespace's).
    child = subprocess.Popen([sys.executable, "-c",
        "import os, time; print(os.readlink('/proc/self'), flush=True); time.sleep(300)"])
    time.sleep(300)
"#;
    let limits = Limits {
        timeout: Some(Duration::from_millis(1500)),
        ..Limits::default()
    };
    let (finished, lines) = invoke(&rt, source, "slow", None, limits).await;
    let e = finished.result.as_ref().unwrap_err();
    assert!(e.message.contains("ran past its timeout of 1.5s"), "{e}");
    assert_eq!(finished.record.status, InvocationStatus::Timeout);
    let grandchild: u32 = lines.lock().unwrap()[0].1.parse().unwrap();
    for _ in 0..50 {
        if !alive(grandchild) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !alive(grandchild),
        "the function's subprocess {grandchild} outlived it"
    );
}

#[tokio::test]
async fn a_memory_limit_stops_the_function() {
    let rt = runtime(RuntimeOptions::default());
    let source = "import time\ndef greedy():\n    hog = bytearray(800 << 20)\n    time.sleep(5)\n    return len(hog)\n";
    let limits = Limits {
        memory_bytes: Some(300 << 20),
        ..Limits::default()
    };
    let (finished, _) = invoke(&rt, source, "greedy", None, limits).await;
    let e = finished.result.as_ref().unwrap_err();
    assert!(e.message.contains("over its limit of 300 MiB"), "{e}");
    assert_eq!(finished.record.status, InvocationStatus::Memory);
    assert!(finished.record.peak_memory_bytes > 300 << 20);
}

/// What user code cannot reach: the catalog, other processes, the network, IPC objects.
mod confinement;
/// The escape suite: a function trying what a hostile one would (issue #14).
mod escapes;
/// Tables handed over through the pool of allocated shared memory.
mod handoff;
/// Kept children (`[functions] reuse`): the next invocation of one function version.
mod kept;
/// Its limits: processes, the folder, open files, memory, the reply, the CPU.
mod limits;
/// Warm workers: started ahead, reused without sharing state, and a program without the SDK.
mod workers;
