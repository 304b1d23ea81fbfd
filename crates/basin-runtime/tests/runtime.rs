//! The function runtime with a real `uv` and real Python workers: environments built once and
//! reused, failures that leave nothing, and invocations that are confined, limited and metered.
//! Needs `uv` on PATH (scripts/test.sh puts it there) and PyPI for the packages.

use std::path::Path;

use basin_core::ErrorKind;
use basin_runtime::{EnvCache, EnvSpec};

fn cache(dir: &Path) -> EnvCache {
    EnvCache::new(dir.join("envs"), dir.join("tools"))
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("envs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default()
}

async fn python_says(python: &Path, code: &str) -> String {
    let out = tokio::process::Command::new(python)
        .args(["-c", code])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn an_environment_is_built_once_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvSpec::new("3.11").with_package("six", "1.16.0");
    let first = cache(dir.path()).resolve(&spec).await.unwrap();
    assert!(first.built);
    assert_eq!(
        python_says(&first.python, "import six; print(six.__version__)").await,
        "1.16.0"
    );
    let again = cache(dir.path()).resolve(&spec).await.unwrap();
    assert!(!again.built, "the second resolve must not install anything");
    assert_eq!(again.path, first.path);
    // Same packages in another order: same environment.
    assert_eq!(
        EnvSpec::new("3.11").with_package("SIX", "1.16.0").hash(),
        spec.hash()
    );
    assert_ne!(
        EnvSpec::new("3.11").with_package("six", "1.15.0").hash(),
        spec.hash()
    );
}

#[tokio::test]
async fn concurrent_resolves_of_a_new_spec_build_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvSpec::new("3.11");
    // Separate caches over one folder behave like separate processes.
    let (x, y, z) = (cache(dir.path()), cache(dir.path()), cache(dir.path()));
    let (a, b, c) = tokio::join!(x.resolve(&spec), y.resolve(&spec), z.resolve(&spec));
    let built = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .filter(|e| e.built)
        .count();
    assert_eq!(built, 1);
    assert_eq!(cache(dir.path()).list().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_build_names_the_package_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvSpec::new("3.11").with_package("basin-no-such-package-xyz", "1.0.0");
    let err = cache(dir.path()).resolve(&spec).await.unwrap_err();
    assert!(
        err.message.contains("basin-no-such-package-xyz"),
        "{}",
        err.message
    );
    assert!(err.hint.is_some());
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

/// docopt 0.6.2 is on PyPI only as a source archive: installing it runs its setup.py.
#[tokio::test]
async fn a_package_without_a_wheel_is_built_only_when_the_setting_allows() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvSpec::new("3.11").with_package("docopt", "0.6.2");
    let err = cache(dir.path()).resolve(&spec).await.unwrap_err();
    assert!(err.message.contains("docopt"), "{}", err.message);
    let hint = err.hint.unwrap_or_default();
    assert!(hint.contains("build_from_source = true"), "{hint}");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );

    let env = cache(dir.path())
        .with_source_builds(true)
        .resolve(&spec)
        .await
        .unwrap();
    assert!(env.built);
    let version = python_says(&env.python, "import docopt; print(docopt.__version__)").await;
    assert_eq!(version.trim(), "0.6.2");
}

#[tokio::test]
async fn an_unavailable_python_lists_the_ones_present() {
    let dir = tempfile::tempdir().unwrap();
    let err = cache(dir.path())
        .resolve(&EnvSpec::new("3.99"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message.contains("Python 3.99 is not available"),
        "{}",
        err.message
    );
    assert!(
        err.hint.as_deref().unwrap_or_default().contains("3.11"),
        "{:?}",
        err.hint
    );
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn list_remove_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path());
    let env = cache.resolve(&EnvSpec::new("3.11")).await.unwrap();
    let listed = cache.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].bytes > 0);
    assert!(
        cache
            .prune(std::time::Duration::from_secs(3600))
            .unwrap()
            .is_empty(),
        "just used"
    );
    assert_eq!(
        cache.remove(&env.hash[..4]).unwrap(),
        vec![env.hash.clone()]
    );
    assert!(cache.list().unwrap().is_empty());
    assert_eq!(
        cache.remove("ffff").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn without_uv_on_path_basin_installs_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let env = cache(dir.path())
        .with_search_path(None)
        .resolve(&EnvSpec::new("3.11"))
        .await
        .unwrap();
    assert!(dir.path().join("tools/uv/bin/uv").is_file());
    assert!(
        python_says(&env.python, "import sys; print(sys.version_info[:2])")
            .await
            .contains("3, 11")
    );
}

// ---------------------------------------------------------------------------------------------
// Invocations

mod invocations {
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
        let env = rt.environment(&pyarrow()).await.unwrap();
        let mut ws = rt.workspace().unwrap();
        if let Some(batch) = input {
            let schema = batch.schema();
            ws.write_input("orders", schema, futures::stream::iter(vec![Ok(batch)]))
                .await
                .unwrap();
        }
        let invocation = Invocation {
            function: format!("fn.py:{name}"),
            target: Target::Python {
                file: PathBuf::from("/project/fn.py"),
                name: name.into(),
                source: source.into(),
            },
            env,
            preload: vec!["pyarrow".into()],
            event: serde_json::json!({"n": 3}),
            params: serde_json::Value::Null,
            secrets: BTreeMap::from([("API_KEY".into(), "s3cret".into())]),
            limits,
            concurrency: None,
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
        let source = "def helper(x):\n    return x / 0\n\ndef broken(event):\n    return helper(event['n'])\n";
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

    #[tokio::test]
    async fn user_code_cannot_read_the_catalog_other_processes_or_the_network() {
        let rt = runtime(RuntimeOptions::default());
        let lake = tempfile::tempdir().unwrap();
        let catalog = lake.path().join("catalog.db");
        std::fs::write(&catalog, "SQLite format 3").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // A service's Unix socket in /tmp: connecting by path is not a file access Landlock
        // governs, so the folder is covered instead.
        let service = lake.path().join("service.sock");
        let _service = std::os::unix::net::UnixListener::bind(&service).unwrap();
        let port = listener.local_addr().unwrap().port();
        let source = format!(
            r#"
import os, socket
{ATTEMPT}
def probe():
    return {{
        "catalog": attempt(lambda: open({catalog:?}).read()),
        "basin_environ": attempt(lambda: open("/proc/{basin}/environ").read()),
        "network": attempt(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2)),
        "default_route": any(l.split()[1] == "00000000" for l in open("/proc/net/route").readlines()[1:]),
        "workdir": attempt(lambda: open("scratch.txt", "w").write("x")),
        "unix_socket": attempt(lambda: socket.socket(socket.AF_UNIX).connect({service:?})),
        "signal_basin": attempt(lambda: os.kill({basin}, 0)),
        "env": sorted(os.environ),
    }}
"#,
            basin = std::process::id()
        );
        let (finished, _) = invoke(&rt, &source, "probe", None, Limits::default()).await;
        let v = json(&finished);
        assert!(
            v["catalog"] == "PermissionError" || v["catalog"] == "FileNotFoundError",
            "{v}"
        );
        assert_eq!(v["basin_environ"], "PermissionError", "{v}");
        assert_ne!(v["network"], "allowed", "{v}");
        assert_eq!(v["workdir"], "allowed", "{v}");
        assert_ne!(v["unix_socket"], "allowed", "{v}");
        // Refused by Landlock's scoping, or Basin is not even in the function's PID namespace.
        assert_ne!(v["signal_basin"], "allowed", "{v}");
        let env: Vec<String> = serde_json::from_value(v["env"].clone()).unwrap();
        assert!(env.contains(&"API_KEY".to_string()), "{env:?}");
        assert!(
            !env.iter()
                .any(|k| k.starts_with("CARGO") || k == "USER" || k.starts_with("AWS")),
            "the environment is scrubbed: {env:?}"
        );
        assert!(finished.unconfined.is_empty(), "{:?}", finished.unconfined);

        let online = Limits {
            internet: true,
            ..Limits::default()
        };
        // With the internet: a way out (the `internet` wall's network), but none to the
        // host's loopback, where the listener is.
        assert_eq!(v["default_route"], false, "{v}");
        let (finished, _) = invoke(&rt, &source, "probe", None, online).await;
        let v = json(&finished);
        assert_eq!(v["default_route"], true, "{v}");
        assert_ne!(v["network"], "allowed", "{v}");
        assert!(finished.unconfined.is_empty(), "{:?}", finished.unconfined);
    }

    /// System V IPC objects live until removed, in the IPC namespace they were made in: each
    /// invocation has its own, so one left behind reaches no later invocation.
    #[tokio::test]
    async fn no_system_v_ipc_object_outlives_an_invocation() {
        let rt = runtime(RuntimeOptions::default());
        let source = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
KEY, IPC_CREAT, IPC_RMID = 0x42A5E, 0o1000, 0
def leave():
    return libc.shmget(KEY, 4096, IPC_CREAT | 0o600)
def find():
    found = libc.shmget(KEY, 0, 0)
    if found >= 0:
        libc.shmctl(found, IPC_RMID, None)  # not left on the host if this test fails
    return {"found": found, "errno": ctypes.get_errno()}
"#;
        let (left, _) = invoke(&rt, source, "leave", None, Limits::default()).await;
        assert!(json(&left).as_i64().unwrap() >= 0, "{:?}", left.result);
        let (found, _) = invoke(&rt, source, "find", None, Limits::default()).await;
        let v = json(&found);
        assert_eq!(v["found"], -1, "{v}");
        assert_eq!(v["errno"], libc::ENOENT, "{v}");
    }

    /// The worker imports the environment's packages before it forks any invocation: their
    /// import code runs inside the worker's own walls, not with every right of Basin's user.
    #[tokio::test]
    async fn a_packages_import_code_runs_inside_the_workers_walls() {
        let root = tempfile::tempdir().unwrap();
        let envs = EnvCache::new(root.path().join("envs"), root.path().join("tools"));
        let spec = EnvSpec::new("3.11").with_package("six", "1.16.0");
        let env = envs.resolve(&spec).await.unwrap();
        // Outside /tmp, which the worker covers (the sockets wall): Landlock is what stops
        // these. The service's socket is in /tmp.
        let lake = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let catalog = lake.path().join("catalog.db");
        std::fs::write(&catalog, "SQLite format 3").unwrap();
        let outside = lake.path().join("planted.txt");
        let tmp = tempfile::tempdir().unwrap();
        let service = tmp.path().join("service.sock");
        let _service = std::os::unix::net::UnixListener::bind(&service).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // A package of the environment, as pip would have installed it.
        let site = env.path.join("lib/python3.11/site-packages");
        std::fs::create_dir_all(site.join("probe_pkg")).unwrap();
        std::fs::write(
            site.join("probe_pkg/__init__.py"),
            format!(
                r#"import os, socket
{ATTEMPT}
IMPORTED_BY = os.getpid()
RESULTS = {{
    "catalog": attempt(lambda: open({catalog:?}).read()),
    "write_outside": attempt(lambda: open({outside:?}, "w").write("x")),
    "basin_environ": attempt(lambda: open("/proc/{basin}/environ").read()),
    "unix_socket": attempt(lambda: socket.socket(socket.AF_UNIX).connect({service:?})),
    "network": attempt(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2)),
    "default_route": any(l.split()[1] == "00000000" for l in open("/proc/net/route").readlines()[1:]),
}}
"#,
                basin = std::process::id()
            ),
        )
        .unwrap();
        let dist = site.join("probe_pkg-1.0.dist-info");
        std::fs::create_dir_all(&dist).unwrap();
        std::fs::write(
            dist.join("METADATA"),
            "Metadata-Version: 2.1\nName: probe-pkg\nVersion: 1.0\n",
        )
        .unwrap();
        std::fs::write(dist.join("top_level.txt"), "probe_pkg\n").unwrap();
        std::fs::write(dist.join("RECORD"), "").unwrap();

        let rt = Runtime::new(envs, RuntimeOptions::default()).unwrap();
        let source = r#"
import os, probe_pkg
def probe():
    return dict(probe_pkg.RESULTS, in_worker=probe_pkg.IMPORTED_BY != os.getpid())
"#;
        let probe = |internet: bool| {
            let invocation = Invocation {
                function: "fn.py:probe".into(),
                target: Target::Python {
                    file: PathBuf::from("/project/fn.py"),
                    name: "probe".into(),
                    source: source.into(),
                },
                env: env.clone(),
                preload: vec!["probe-pkg".into()],
                event: serde_json::Value::Null,
                params: serde_json::Value::Null,
                secrets: BTreeMap::new(),
                limits: Limits {
                    internet,
                    ..Limits::default()
                },
                concurrency: None,
            };
            rt.invoke(rt.workspace().unwrap(), invocation, Arc::new(|_, _| {}))
        };
        let finished = probe(false).await;
        let v = json(&finished);
        // Imported by the worker (preloaded), not by the function's own process.
        assert_eq!(v["in_worker"], true, "{v}");
        assert_eq!(v["catalog"], "PermissionError", "{v}");
        assert_eq!(v["write_outside"], "PermissionError", "{v}");
        assert!(!outside.exists());
        assert_eq!(v["basin_environ"], "PermissionError", "{v}");
        assert_ne!(v["unix_socket"], "allowed", "{v}");
        assert_ne!(v["network"], "allowed", "{v}");
        assert!(finished.unconfined.is_empty(), "{:?}", finished.unconfined);

        // Functions with the internet have a worker of their own, with a way out (the
        // `internet` wall's network) but none to the host's loopback, and otherwise the same
        // walls.
        let finished = probe(true).await;
        let v = json(&finished);
        assert_eq!(v["in_worker"], true, "{v}");
        assert_eq!(v["default_route"], true, "{v}");
        assert_ne!(v["network"], "allowed", "{v}");
        assert_eq!(v["catalog"], "PermissionError", "{v}");
        assert_eq!(v["write_outside"], "PermissionError", "{v}");
        assert!(finished.unconfined.is_empty(), "{:?}", finished.unconfined);
    }

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
        let rt = runtime(RuntimeOptions {
            keep_alive: Duration::from_millis(400),
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

    /// Tables handed over through the pool of allocated shared memory: the second invocation
    /// writes into files the first left, its output file holds only zeros before it writes
    /// (never another invocation's bytes), and every table still arrives whole. Small tables
    /// are copied, and their files go back to the pool after Basin has gone on.
    #[tokio::test]
    async fn handed_over_tables_reuse_allocated_memory_and_leak_nothing() {
        handed_over_tables(RuntimeOptions::default()).await;
    }

    /// The same with every table mapped: Basin waits until the function's processes have
    /// ended before it reads their output.
    #[tokio::test]
    async fn mapped_tables_reuse_allocated_memory_and_leak_nothing() {
        handed_over_tables(RuntimeOptions {
            copy_outputs_below: 0,
            ..RuntimeOptions::default()
        })
        .await;
    }

    async fn handed_over_tables(options: RuntimeOptions) {
        let rt = runtime(options);
        let counters = rt.options().counters.clone();
        let pooled = || {
            counters
                .handoff_pool_bytes
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let echo = "def echo(orders):\n    return orders\n";
        let (first, _) = invoke(&rt, echo, "echo", Some(orders()), Limits::default()).await;
        let Ok(Output::Table { batches, .. }) = &first.result else {
            panic!("{:?}", first.result.as_ref().err());
        };
        assert_eq!(batches[0], orders());
        drop(first);
        // Its input and output files go back to the pool, fresh files are made in the
        // background (sized by the output), and the next invocation's output file is one of
        // them: read before the function writes it, it holds only zeros.
        let peek = r#"
def peek(orders):
    try:
        with open("../output.arrow", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    return {"size": len(data), "zeros": data.count(0) == len(data)}
"#;
        let mut second = None;
        for _ in 0..100 {
            let (finished, _) = invoke(&rt, peek, "peek", Some(orders()), Limits::default()).await;
            if json(&finished)["size"].as_u64().unwrap() > 0 {
                second = Some(finished);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let second = second.expect("no pooled output file after 100 invocations");
        assert!(pooled() >= 4096, "the pool holds {} bytes", pooled());
        let seen = json(&second);
        assert_eq!(seen["zeros"], true, "a pooled output file held old bytes");
        assert_eq!(
            second.record.bytes_out, 0,
            "an unused output file is not output"
        );
        drop(second);

        let small = orders().slice(1, 2);
        let (third, _) = invoke(&rt, echo, "echo", Some(small.clone()), Limits::default()).await;
        let Ok(Output::Table { batches, .. }) = &third.result else {
            panic!("{:?}", third.result.as_ref().err());
        };
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].num_rows(), 2);
        assert_eq!(batches[0].column(0).as_ref(), small.column(0).as_ref());
        let hits = counters
            .handoff_pool_hits
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(hits >= 2, "{hits} tables went through the pool");
    }

    /// The escape suite: a function trying what a hostile one would (issue #14).
    mod escapes;
    /// Its limits: processes, the folder, open files, memory, the reply, the CPU.
    mod limits;
}
