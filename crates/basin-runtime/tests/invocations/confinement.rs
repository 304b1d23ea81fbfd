//! What user code cannot reach from inside its walls: the catalog, other processes, the
//! network, System V IPC objects of other invocations, and the rights of Basin's user while
//! a package is imported. Part of the `runtime` test binary (tests/runtime.rs).

use super::*;

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
