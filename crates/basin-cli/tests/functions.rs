//! `basin invoke` and `basin usage` through the real binary: functions read tables with
//! pushdown, store outputs in one commit, fail without writing, cannot reach the catalog, and
//! every invocation is metered. Needs `uv` on PATH and PyPI (scripts/test.sh).

mod common;

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

// ---------------------------------------------------------------------------------------------
// Pipelines (`basin run`)

/// A lakehouse holding the example project of `basin init --project`.
fn project() -> Lake {
    let lake = Lake::new();
    lake.ok(&["init", "--project", "."]);
    lake
}

fn run_id(lake: &Lake) -> String {
    let runs = lake.json(&["runs", "ls"]);
    runs[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_pipeline_runs_on_a_branch_and_merges_in_one_commit() {
    let lake = project();
    let before = lake.commits("main");
    let first = lake.run(&["run", "--format", "json"]);
    assert!(first.status.success(), "{first:?}");
    // The first run in a lakehouse says it builds the environment (once, then cached).
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(said.contains("building environment"), "{said}");
    let record: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(record["status"], "succeeded");
    let steps: Vec<&str> = record["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["clean_orders", "revenue", "no_negative_revenue"]);
    assert_eq!(record["models"][0]["logs"][0], "kept 5 of 6 orders");
    assert_eq!(lake.commits("main"), before + 1, "one merge commit on main");
    let listed = |args: &[&str]| -> Vec<String> {
        lake.json(args)
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    };
    // A merged run leaves no branch behind.
    assert_eq!(record["branch_deleted"], true, "{record}");
    assert_eq!(listed(&["branch", "ls", "--all"]), ["main"]);
    let log = lake.json(&["log", "main", "-n", "1"]);
    assert!(
        log[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("merge run/"),
        "{log}"
    );
    assert_eq!(
        lake.scalar(
            "SELECT revenue FROM shop.revenue WHERE customer = 'ADA'",
            "main"
        ),
        "109.50"
    );
    // Kept when asked, and then listed only with --all.
    let kept: serde_json::Value =
        serde_json::from_str(&lake.ok(&["run", "--no-cache", "--keep-branch", "--format", "json"]))
            .unwrap();
    let branch = kept["branch"].as_str().unwrap();
    assert_eq!(kept["branch_deleted"], false);
    assert_eq!(listed(&["branch", "ls"]), ["main"]);
    assert_eq!(listed(&["branch", "ls", "--all"]), ["main", branch]);
    // The run's own commits name the run and the model that wrote each table.
    let written: Vec<String> = lake
        .json(&["log", branch, "-n", "10"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap().to_string())
        .collect();
    let project = record["project"].as_str().unwrap();
    assert!(
        written.contains(&format!(
            "{branch}: model revenue of {project} wrote shop.revenue (replace)"
        )),
        "{written:?}"
    );
    // Not materialized: clean_orders lived only for the run.
    assert!(
        lake.fails(&["table", "show", "shop.clean_orders"])
            .contains("does not exist")
    );
    let shown = lake.json(&["runs", "show", record["id"].as_str().unwrap()]);
    assert_eq!(shown["merged_commit"], record["merged_commit"]);
    assert!(
        shown["code"]["revenue.sql"]
            .as_str()
            .unwrap()
            .contains("GROUP BY customer_key")
    );
    let logs = lake.ok(&[
        "runs",
        "logs",
        record["id"].as_str().unwrap(),
        "--model",
        "clean_orders",
    ]);
    assert_eq!(logs.trim(), "[clean_orders] kept 5 of 6 orders");

    // Environments are the user's, not the lakehouse's: a new lakehouse reuses this one.
    let other = Lake::sharing_cache(&lake);
    other.ok(&["init", "--project", "."]);
    let run = other.run(&["run"]);
    assert!(run.status.success(), "{run:?}");
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(!said.contains("building environment"), "{said}");
}

#[test]
fn parameters_dry_runs_and_parallel_models() {
    let lake = project();
    lake.write(
        "slow.py",
        "import basin, time\n\n\
         @basin.model()\n\
         def slow_a(orders=basin.Model('raw_orders', columns=['id'])):\n    s = time.time(); time.sleep(0.8); print(s, time.time()); return orders\n\n\
         @basin.model()\n\
         def slow_b(orders=basin.Model('raw_orders', columns=['id'])):\n    s = time.time(); time.sleep(0.8); print(s, time.time()); return orders\n",
    );
    let before = lake.commits("main");
    let record: serde_json::Value = serde_json::from_str(&lake.ok(&[
        "run",
        "--dry-run",
        "--param",
        "min_amount=10",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(record["status"], "dry-run");
    assert_eq!(record["params"]["min_amount"], 10.0);
    assert_eq!(lake.commits("main"), before, "a dry run merges nothing");
    let branch = record["branch"].as_str().unwrap();
    assert_eq!(
        lake.scalar("SELECT count(*) FROM shop.revenue", branch),
        "2",
        "ada and bob spent 10 or more"
    );
    let spans: Vec<(f64, f64)> = record["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"].as_str().unwrap().starts_with("slow_"))
        .map(|m| {
            let parts: Vec<f64> = m["logs"][0]
                .as_str()
                .unwrap()
                .split(' ')
                .map(|p| p.parse().unwrap())
                .collect();
            (parts[0], parts[1])
        })
        .collect();
    assert_eq!(spans.len(), 2);
    assert!(
        spans[0].0 < spans[1].1 && spans[1].0 < spans[0].1,
        "independent models overlap: {spans:?}"
    );
    let bad = lake.fails(&["run", "--param", "min_amount=lots"]);
    assert!(
        bad.contains("parameter `min_amount`: `lots` is not a float"),
        "{bad}"
    );
    let unknown = lake.fails(&["run", "--param", "min_amont=1"]);
    assert!(unknown.contains("did you mean `min_amount`?"), "{unknown}");
}

#[test]
fn a_failing_expectation_or_model_leaves_the_target_untouched() {
    let lake = project();
    lake.write(
        "strict.py",
        "import basin\n\n@basin.expectation()\ndef at_most_two_customers(revenue=basin.Model('revenue')):\n    return revenue.num_rows <= 2\n",
    );
    let before = lake.commits("main");
    let err = lake.fails(&["run"]);
    assert!(
        err.contains("expectation `at_most_two_customers` failed"),
        "{err}"
    );
    assert!(
        err.contains("`main` is untouched") && err.contains("basin runs show"),
        "{err}"
    );
    assert_eq!(lake.commits("main"), before);
    assert!(
        lake.fails(&["table", "show", "shop.revenue"])
            .contains("does not exist")
    );
    // The run branch keeps what the run did.
    let id = run_id(&lake);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM shop.revenue", &format!("run/{id}")),
        "3"
    );
    assert_eq!(lake.json(&["runs", "show", &id])["status"], "failed");

    std::fs::remove_file(lake.path().join("strict.py")).unwrap();
    lake.write("broken.py", "import basin\n\n@basin.model()\ndef broken(orders=basin.Model('raw_orders')):\n    raise RuntimeError('no')\n");
    let err = lake.fails(&["run"]);
    assert!(
        err.contains("model `broken` failed") && err.contains("broken.py:5"),
        "{err}"
    );
    assert_eq!(lake.commits("main"), before);
    // A prefix both runs share lists them, as git does for an ambiguous prefix.
    let runs = lake.json(&["runs", "ls"]);
    let ids: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{runs}");
    let shared: String = ids[0]
        .chars()
        .zip(ids[1].chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    let err = lake.fails(&["runs", "show", &shared]);
    assert!(
        err.contains(&format!("`{shared}` names several runs:"))
            && err.contains(&format!("\n  {}  ", ids[0]))
            && err.contains(&format!("\n  {}  ", ids[1]))
            && err.contains("failed")
            && err.contains("hint: give more of the id"),
        "{err}"
    );
}

#[test]
fn dag_errors_name_the_models() {
    let lake = project();
    lake.write("a.sql", "SELECT * FROM b");
    lake.write("b.sql", "WITH x AS (SELECT * FROM a) SELECT * FROM x");
    let err = lake.fails(&["run"]);
    assert!(
        err.contains("cycle: a -> b -> a") || err.contains("cycle: b -> a -> b"),
        "{err}"
    );
    std::fs::remove_file(lake.path().join("b.sql")).unwrap();
    let err = lake.fails(&["run"]);
    assert!(
        err.contains("model `a`") && err.contains("reads `b`, which is neither a model"),
        "{err}"
    );
    lake.write("a.sql", "SELECT 1 AS one");
    lake.write(
        "dup.py",
        "import basin\n\n@basin.model(name='a')\ndef also_a():\n    pass\n",
    );
    let err = lake.fails(&["run"]);
    assert!(err.contains("two models produce `shop.a`"), "{err}");
}

#[test]
fn the_demo_runs_its_pipeline_and_merges_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["demo", "--scale", "0.01", "--dir"])
        .arg(dir.path())
        .env_remove("BASIN_HOME")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("FRANCE") && stdout.contains("JAPAN"),
        "{stdout}"
    );
    assert!(
        stderr.contains("ok line_revenue") && stderr.contains("ok no_negative_revenue"),
        "{stderr}"
    );
    let runs = std::process::Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["runs", "ls", "--format", "json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["status"], "succeeded");
}

#[test]
fn an_unchanged_project_reuses_its_outputs_and_an_edit_reruns_its_descendants() {
    let lake = project();
    lake.ok(&["run"]);
    let commits = lake.commits("main");
    let hits = |record: &serde_json::Value| -> Vec<(String, bool)> {
        record["models"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] != "expectation")
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m["cache_hit"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let again: serde_json::Value =
        serde_json::from_str(&lake.ok(&["run", "--format", "json"])).unwrap();
    assert_eq!(
        hits(&again),
        [("clean_orders".into(), true), ("revenue".into(), true)]
    );
    assert!(
        again["merged_commit"].is_null(),
        "nothing changed, nothing to merge"
    );
    assert_eq!(lake.commits("main"), commits);

    let sql = std::fs::read_to_string(lake.path().join("revenue.sql")).unwrap();
    lake.write(
        "revenue.sql",
        &sql.replace("ORDER BY revenue DESC", "ORDER BY revenue"),
    );
    let edited: serde_json::Value =
        serde_json::from_str(&lake.ok(&["run", "--format", "json"])).unwrap();
    assert_eq!(
        hits(&edited),
        [("clean_orders".into(), true), ("revenue".into(), false)]
    );

    let forced: serde_json::Value =
        serde_json::from_str(&lake.ok(&["run", "--no-cache", "--format", "json"])).unwrap();
    assert_eq!(
        hits(&forced),
        [("clean_orders".into(), false), ("revenue".into(), false)]
    );
    // New data in an input table: everything downstream runs again.
    lake.write(
        "more.csv",
        "id,customer,amount,day\n7,dee,5.00,2024-01-04\n",
    );
    lake.ok(&["import", "more.csv", "--table", "shop.raw_orders"]);
    let fresh: serde_json::Value =
        serde_json::from_str(&lake.ok(&["run", "--format", "json"])).unwrap();
    assert_eq!(
        hits(&fresh),
        [("clean_orders".into(), false), ("revenue".into(), false)]
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM shop.revenue", "main"),
        "4"
    );
}

#[test]
fn a_replay_reruns_the_stored_code_on_the_commit_it_read() {
    let lake = project();
    // A model that differs on every run, to show the comparison can tell.
    lake.write(
        "stamp.sql",
        "SELECT to_char(now(), '%Y-%m-%dT%H:%M:%S%.f') AS at",
    );
    lake.ok(&["run"]);
    let id = run_id(&lake);
    // Later changes to the data and the code do not change what the replay runs.
    lake.write(
        "more.csv",
        "id,customer,amount,day\n7,dee,5.00,2024-01-04\n",
    );
    lake.ok(&["import", "more.csv", "--table", "shop.raw_orders"]);
    lake.write("revenue.sql", "SELECT 1 AS nothing");
    let report = lake.json(&["runs", "replay", &id]);
    let output = |table: &str| {
        report["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["table"] == table)
            .unwrap()
            .clone()
    };
    let revenue = output("shop.revenue");
    assert_eq!(revenue["identical"], true, "{report}");
    assert_eq!(
        (
            revenue["original_rows"].as_u64(),
            revenue["replayed_rows"].as_u64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(output("shop.stamp")["identical"], false, "{report}");
    assert_eq!(report["identical"], false);
    // Outputs differ, so the replay's branches stay for a look.
    let kept = report["kept_branches"].as_array().unwrap();
    assert_eq!(kept.len(), 2, "{report}");
    assert!(kept.iter().any(|b| b == &format!("replay/{id}")));

    // When every output is identical, the replay leaves no branch behind.
    let lake = project();
    lake.ok(&["run"]);
    let report = lake.json(&["runs", "replay", &run_id(&lake)]);
    assert_eq!(report["identical"], true, "{report}");
    assert_eq!(report["kept_branches"], serde_json::json!([]));
    assert_eq!(
        lake.json(&["branch", "ls", "--all"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn append_models_add_rows_on_every_run() {
    let lake = project();
    lake.write(
        "history.py",
        "import basin\n\n@basin.model(materialize='append')\ndef snapshots(revenue=basin.Model('revenue')):\n    return revenue\n",
    );
    lake.ok(&["run"]);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM shop.snapshots", "main"),
        "3"
    );
    let again: serde_json::Value =
        serde_json::from_str(&lake.ok(&["run", "--format", "json"])).unwrap();
    let snapshots = again["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "snapshots")
        .unwrap();
    assert_eq!(
        snapshots["cache_hit"], false,
        "appending is the point: it always runs"
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM shop.snapshots", "main"),
        "6"
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM shop.revenue", "main"),
        "3",
        "replace stays replaced"
    );
}

#[test]
fn concurrent_runs_on_one_target_merge_three_ways() {
    let lake = project();
    // A second project in its own folder and namespace, writing other tables.
    let other = lake.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        other.join("basin.toml"),
        "[project]\nname = \"other\"\nnamespace = \"other\"\n",
    )
    .unwrap();
    std::fs::write(
        other.join("slow.py"),
        "import basin, time\n\n@basin.model()\ndef totals(orders=basin.Model('shop.raw_orders', columns=['amount'])):\n    time.sleep(1.5)\n    return orders\n",
    )
    .unwrap();
    let slow = std::process::Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["run", "other"])
        .current_dir(lake.path())
        .env_remove("BASIN_HOME")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs, the target moves: another run merges first.
    std::thread::sleep(std::time::Duration::from_millis(300));
    lake.ok(&["run"]);
    let out = slow.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM other.totals", "main"),
        "6"
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM shop.revenue", "main"),
        "3"
    );
    let runs = lake.json(&["runs", "ls"]);
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "succeeded"),
        "{runs}"
    );
}

#[test]
fn project_secrets_reach_its_models_and_only_them() {
    let lake = project();
    let toml = std::fs::read_to_string(lake.path().join("basin.toml")).unwrap();
    lake.write(
        "basin.toml",
        &toml.replace(
            "python = \"3.11\"",
            "python = \"3.11\"\nsecrets = [\"SHOP_TOKEN\"]",
        ),
    );
    lake.write(
        "token.py",
        "import basin, os\nimport pyarrow as pa\n\n@basin.model()\ndef token():\n    return pa.table({'token': [os.environ.get('SHOP_TOKEN')], 'home': pa.array([os.environ.get('CARGO_HOME')], pa.string())})\n",
    );
    let err = lake.fails(&["run"]);
    assert!(
        err.contains("needs the secret `SHOP_TOKEN`, which is not set"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_basin"))
        .arg("run")
        .current_dir(lake.path())
        .env("SHOP_TOKEN", "s3cret")
        .env("CARGO_HOME", "/not/for/functions")
        .env_remove("BASIN_HOME")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lake.scalar("SELECT token FROM shop.token", "main"),
        "s3cret"
    );
    assert_eq!(
        lake.scalar("SELECT count(home) FROM shop.token", "main"),
        "0"
    );
}

#[test]
fn a_sql_model_reads_the_fresh_output_of_a_stored_model_on_every_run() {
    let lake = project();
    lake.write(
        "big_customers.sql",
        "SELECT customer FROM revenue WHERE revenue > 40",
    );
    lake.ok(&["run"]);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM shop.big_customers", "main"),
        "2"
    );
    // shop.revenue now exists on main; the next run must read its fresh output, not the table.
    lake.ok(&["run", "--no-cache", "--param", "min_amount=50"]);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM shop.big_customers", "main"),
        "1"
    );
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
