//! `basin invoke` and `basin usage` through the real binary: functions read tables with
//! pushdown, store outputs in one commit, fail without writing, cannot reach the catalog, and
//! every invocation is metered. Needs `uv` on PATH and PyPI (scripts/test.sh).

mod common;
#[path = "functions/pipelines.rs"]
mod pipelines;
#[path = "functions/reruns.rs"]
mod reruns;

use common::Lake;

const FUNCTIONS: &str = r#"
import basin
import pyarrow.compute as pc

@basin.python("3.11", timeout="1m", memory="1GiB")
def big(orders=basin.Model("sales.orders", columns=["id", "amount"], filter="amount > 5")):
    print("columns:", orders.column_names)
    return orders.append_column("doubled", pc.multiply(orders["amount"], 2))

@basin.python("3.11")
def broken(orders=basin.Model("sales.orders")):
    total = sum(orders["amount"].to_pylist())
    raise ValueError(f"refusing {total}")

@basin.python("3.11")
def slow(event):
    import time
    time.sleep(30)

def peek(event, context):
    try:
        open(event["path"], "rb").read(16)
        return "read"
    except OSError as e:
        return type(e).__name__

@basin.python("3.11", memory="256MiB")
def hoard(event):
    import os
    fd = os.memfd_create("hoard")
    for _ in range(512):
        os.write(fd, b"x" * (1 << 20))
    return "held 512 MiB"

@basin.python("3.11")
def undeclared(event):
    import yaml
    return yaml.__name__
"#;

fn lake() -> Lake {
    let lake = Lake::with_orders();
    lake.write("fns.py", FUNCTIONS);
    lake
}

#[test]
fn invoke_pushes_columns_and_filter_into_the_scan_and_stores_the_output() {
    let lake = lake();
    let out = lake.ok(&["invoke", "fns.py:big", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["id"], 1);
    assert!(
        rows[0].get("day").is_none(),
        "only the declared columns: {rows}"
    );

    lake.ok(&["branch", "create", "dev"]);
    let main_commits = lake.commits("main");
    lake.ok(&[
        "invoke",
        "fns.py:big",
        "--to",
        "sales.big",
        "--branch",
        "dev",
    ]);
    assert_eq!(
        lake.scalar("SELECT sum(doubled) FROM sales.big", "dev"),
        "21.00"
    );
    assert_eq!(lake.commits("main"), main_commits, "main is untouched");
    // The log names the writer, not "import 1 file".
    assert_eq!(
        lake.json(&["log", "dev", "-n", "1"])[0]["message"],
        "function fns.py:big wrote sales.big (append)"
    );
    let missing = lake.fails(&["query", "SELECT * FROM sales.big", "--ref", "main"]);
    assert!(missing.contains("does not exist"), "{missing}");
}

#[test]
fn a_failing_function_names_its_line_and_writes_nothing() {
    let lake = lake();
    let before = lake.commits("main");
    let err = lake.fails(&["invoke", "fns.py:broken", "--to", "sales.out"]);
    assert!(
        err.contains("function `fns.py:broken` raised ValueError at"),
        "{err}"
    );
    assert!(err.contains("fns.py:13: refusing 13.75"), "{err}");
    assert!(err.contains("Traceback") && err.contains("hint:"), "{err}");
    // A syntax error: the line and a caret, and no hint about decorator literals.
    lake.write(
        "typo.py",
        "import basin\n\n@basin.python(\"3.11\")\ndef f(event)\n    return 1\n",
    );
    let err = lake.fails(&["invoke", "typo.py:f"]);
    assert!(
        err.contains("typo.py:4:13: expected ':'\n  |\n4 | def f(event)\n  |             ^"),
        "{err}"
    );
    assert!(!err.contains("must be literals"), "{err}");
    // An import of a package no `pip=` declares: the hint names the package, the file and
    // where to declare it (the module `yaml` is the package `PyYAML`).
    let err = lake.fails(&["invoke", "fns.py:undeclared"]);
    assert!(
        err.contains("raised ModuleNotFoundError")
            && err.contains("hint: `PyYAML` is not installed in the function's environment")
            && err.contains("add it to `pip={...}` of its decorator in ")
            && err.contains("fns.py (`@basin.python(pip={\"PyYAML\": \"VERSION\"})`)")
            && err.contains("[project.pip]"),
        "{err}"
    );
    let timeout = lake.fails(&[
        "invoke",
        "fns.py:slow",
        "--timeout",
        "1s",
        "--to",
        "sales.out",
    ]);
    assert!(timeout.contains("ran past its timeout of 1s"), "{timeout}");
    assert_eq!(lake.commits("main"), before);
    assert!(
        lake.fails(&["table", "show", "sales.out"])
            .contains("does not exist")
    );
}

#[test]
fn a_functions_output_cannot_land_on_a_protected_branch() {
    let lake = lake();
    lake.ok(&["branch", "create", "dev"]);
    lake.write("basin.toml", "[[branches.protect]]\npattern = \"main\"\n");
    let before = lake.commits("main");
    let err = lake.fails(&["invoke", "fns.py:big", "--to", "sales.big"]);
    assert!(
        err.contains("branch `main` is protected") && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(lake.commits("main"), before);
    lake.ok(&[
        "invoke",
        "fns.py:big",
        "--to",
        "sales.big",
        "--branch",
        "dev",
    ]);
    assert_eq!(lake.scalar("SELECT count(*) FROM sales.big", "dev"), "1");
}

#[test]
fn a_trigger_on_a_new_bucket_named_like_an_existing_one_is_warned_about() {
    let lake = Lake::new();
    std::fs::create_dir_all(lake.path().join(".basin/buckets/landing")).unwrap();
    std::fs::create_dir_all(lake.path().join("fns")).unwrap();
    lake.write(
        "fns/land.py",
        "import basin\n\n@basin.on_object(bucket=\"landin\")\ndef land(event, context):\n    pass\n",
    );
    let out = lake.run(&["deploy", "fns", "--plan"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "warning: function `land` watches a new bucket `landin`: did you mean `landing`?"
        ),
        "{err}"
    );
}

#[test]
fn a_function_cannot_open_the_catalog_database() {
    let lake = lake();
    let catalog = lake.path().join(".basin/catalog.db");
    assert!(catalog.is_file());
    let event = serde_json::json!({"path": catalog}).to_string();
    // Denied by Landlock, or not even there (a lakehouse under /tmp is covered by an empty
    // folder): either way, closed.
    let closed = ["\"PermissionError\"", "\"FileNotFoundError\""];
    let out = lake.ok(&["invoke", "fns.py:peek", "--event", &event]);
    assert!(closed.contains(&out.trim()), "{out}");
    let event = serde_json::json!({"path": lake.path().join("orders.csv")}).to_string();
    let out = lake.ok(&["invoke", "fns.py:peek", "--event", &event]);
    assert!(
        closed.contains(&out.trim()),
        "the user's folder is closed too: {out}"
    );
}

/// Memory in a memfd is in no process's resident count: the `memory` wall (a cgroup per
/// invocation) stops it at the declared limit, and the record says so. (Its resident
/// memory, pyarrow's pages included, stays well under the limit.)
#[test]
fn memory_that_no_process_maps_is_stopped_at_the_declared_limit() {
    let lake = lake();
    let err = lake.fails(&["invoke", "fns.py:hoard"]);
    assert!(
        err.contains("function `fns.py:hoard` reached its memory limit of 256 MiB"),
        "{err}"
    );
    let usage = lake.json(&["usage"]);
    let hoard = usage
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "fns.py:hoard")
        .unwrap();
    assert_eq!(hoard["errors"], 1, "{hoard}");
}

#[test]
fn a_program_without_the_sdk_runs_through_the_protocol() {
    let lake = lake();
    let program =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/shout.py");
    let out = lake.ok(&[
        "invoke",
        program.to_str().unwrap(),
        "--input",
        "orders=sales.orders",
        "--pip",
        "pyarrow==26.0.1",
        "--event",
        r#"{"column": "day", "suffix": "!"}"#,
        "--format",
        "csv",
    ]);
    assert!(
        out.contains("2024-01-01!") && out.contains("2024-01-02!"),
        "{out}"
    );
}

#[test]
fn usage_meters_every_invocation() {
    let lake = lake();
    lake.ok(&["invoke", "fns.py:big"]);
    lake.ok(&["invoke", "fns.py:big"]);
    lake.fails(&["invoke", "fns.py:broken"]);
    let usage = lake.json(&["usage"]);
    let rows = usage.as_array().unwrap();
    let big = rows.iter().find(|r| r["key"] == "fns.py:big").unwrap();
    let broken = rows.iter().find(|r| r["key"] == "fns.py:broken").unwrap();
    assert_eq!(
        (big["invocations"].as_u64(), big["errors"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(
        (broken["invocations"].as_u64(), broken["errors"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(big["rows_in"], 2, "one row per call passed the filter");
    assert_eq!(big["rows_out"], 2);
    // 1 GiB declared: GB-seconds equal the seconds run; the price is Lambda's.
    let seconds = big["duration_seconds"].as_f64().unwrap();
    let gb_seconds = big["gb_seconds"].as_f64().unwrap();
    assert!((gb_seconds - seconds).abs() < 1e-9, "{big}");
    let cost = big["cost_usd"].as_f64().unwrap();
    let expected = gb_seconds * 0.0000166667 + 2.0 * 0.20 / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    let by_day = lake.json(&["usage", "--by", "day", "--since", "2000-01-01"]);
    assert_eq!(by_day[0]["invocations"], 3);
    let none = lake.json(&["usage", "--since", "2999-01-01"]);
    assert_eq!(none.as_array().unwrap().len(), 0);
}

#[test]
fn strict_isolation_refuses_a_function_while_a_wall_is_off_and_doctor_names_it() {
    let lake = lake();
    lake.write(
        "basin.toml",
        "[functions]\nisolation = \"strict\"\ndisable_walls = [\"network\"]\n",
    );
    let doctor = lake.json(&["doctor"]);
    assert_eq!(doctor["functions_run"], false, "{doctor}");
    let network = doctor["walls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["wall"] == "network")
        .unwrap();
    assert_eq!(network["in_force"], false, "{doctor}");
    let err = lake.fails(&[
        "invoke",
        "fns.py:peek",
        "--event",
        r#"{"path": "/etc/hostname"}"#,
    ]);
    assert!(
        err.contains("function `fns.py:peek` was not run: isolation is strict")
            && err.contains("network: turned off by [functions] disable_walls"),
        "{err}"
    );
    assert!(err.contains("hint: run Basin where"), "{err}");

    lake.write(
        "basin.toml",
        "[functions]\nisolation = \"best-effort\"\ndisable_walls = [\"network\"]\n",
    );
    let ran = lake.run(&[
        "invoke",
        "fns.py:peek",
        "--event",
        r#"{"path": "/nowhere"}"#,
    ]);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: functions run with fewer walls (isolation best-effort): missing network"
        ),
        "{stderr}"
    );
}
