//! Pipelines through the real binary (`basin run`, `basin runs`): a run's branch and its one
//! merge, parameters, failures that leave the target untouched, the run cache, replays and
//! secrets.

use crate::common::Lake;

/// A lakehouse holding the example project of `basin init --project`.
pub(crate) fn project() -> Lake {
    let lake = Lake::new();
    lake.ok(&["init", "--project", "."]);
    lake
}

pub(crate) fn run_id(lake: &Lake) -> String {
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
    // A name basin.toml does not declare is refused, whatever the environment holds.
    let err = lake.fails(&["run"]);
    assert!(
        err.contains("needs the secret `SHOP_TOKEN`, which basin.toml does not declare"),
        "{err}"
    );
    let toml = std::fs::read_to_string(lake.path().join("basin.toml")).unwrap();
    lake.write(
        "basin.toml",
        &format!("{toml}\n[secrets]\nSHOP_TOKEN = {{ env = \"SHOP_TOKEN\" }}\n"),
    );
    let err = lake.fails(&["run"]);
    assert!(err.contains("$SHOP_TOKEN"), "{err}");
    assert!(err.contains("is not set"), "{err}");
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

/// A model that prints more than `[functions] max_output_size` keeps that much in its run
/// record (which lives in the catalog), and a last line says how much more it printed.
#[test]
fn a_models_kept_logs_stop_at_max_output_size() {
    let lake = project();
    let toml = std::fs::read_to_string(lake.path().join("basin.toml")).unwrap();
    lake.write(
        "basin.toml",
        &format!("{toml}\n[functions]\nmax_output_size = \"64KiB\"\n"),
    );
    lake.write(
        "chatty.py",
        "import basin\nimport pyarrow as pa\n\n@basin.model()\ndef chatty():\n    for i in range(300):\n        print(f'{i:04} ' + 'x' * 1000)\n    return pa.table({'x': [1]})\n",
    );
    let record: serde_json::Value =
        serde_json::from_slice(&lake.run(&["run", "--format", "json"]).stdout).unwrap();
    let chatty = record["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "chatty")
        .unwrap();
    let logs: Vec<&str> = chatty["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let kept: usize = logs.iter().map(|l| l.len() + 1).sum();
    assert!(kept < (64 << 10) + 300, "{kept} bytes kept");
    assert!(logs[0].starts_with("0000 "), "{:?}", &logs[0][..10]);
    let last = logs.last().unwrap();
    assert!(
        last.starts_with(&format!(
            "[basin: {} more lines not kept",
            300 - (logs.len() - 1)
        )) && last.contains("64 KiB (`max_output_size`)"),
        "{last}"
    );
}

#[test]
fn a_run_into_a_protected_branch_passes_its_checks_or_waits_for_a_review() {
    let lake = project();
    let config = lake.path().join("basin.toml");
    let project_toml = std::fs::read_to_string(&config).unwrap();
    let protect = |checks: &str, approvals: u32| {
        std::fs::write(
            &config,
            format!(
                "{project_toml}\n[[branches.protect]]\npattern = \"main\"\nchecks = [{checks}]\napprovals = {approvals}\n\n\
                 [checks.small_revenue]\nsql = \"SELECT customer, revenue FROM shop.revenue WHERE revenue > 100\"\n\n\
                 [checks.any_revenue]\nsql = \"SELECT * FROM shop.revenue WHERE revenue < 0\"\n"
            ),
        )
        .unwrap();
    };
    let before = lake.commits("main");
    protect("\"small_revenue\"", 0);
    let err = lake.fails(&["run"]);
    assert!(err.contains("check `small_revenue` returned"), "{err}");
    assert!(err.contains("`main` is untouched"), "{err}");
    assert_eq!(lake.commits("main"), before);

    protect("\"any_revenue\"", 1);
    lake.write(
        "expect.py",
        "import basin\n\n@basin.expectation()\ndef has_rows(revenue=basin.Model('revenue')):\n    return revenue.num_rows >= 1\n",
    );
    let err = lake.fails(&["run"]);
    assert!(err.contains("needs 1 approval"), "{err}");
    assert_eq!(lake.commits("main"), before);
    // The run's branch stays, ready for a review.
    let id = run_id(&lake);
    let review = lake.json(&["review", "open", &format!("run/{id}"), "--into", "main"]);
    let number = review["id"].to_string();
    lake.ok_as("reviewer", &["review", "approve", &number]);
    let merged = lake.json(&["review", "merge", &number]);
    assert_eq!(merged["checks"][0]["name"], "any_revenue", "{merged}");
    // The run's expectations count as checks of its branch.
    let check = |report: &serde_json::Value, name: &str| {
        report["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no check `{name}` in {report}"))
    };
    assert_eq!(check(&merged, "expectation has_rows")["passed"], true);
    assert_eq!(
        check(&merged, "expectation no_negative_revenue")["passed"],
        true
    );
    assert_eq!(lake.commits("main"), before + 1);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM shop.revenue", "main"),
        "3"
    );

    // A run whose expectation failed keeps its branch; a review of it shows the failure and
    // cannot merge it, approved or not.
    lake.write(
        "expect.py",
        "import basin\n\n@basin.expectation()\ndef has_rows(revenue=basin.Model('revenue')):\n    return revenue.num_rows > 100\n",
    );
    assert!(
        lake.fails(&["run", "--no-cache"])
            .contains("expectation `has_rows` failed")
    );
    let failed = run_id(&lake);
    let review = lake.json(&["review", "open", &format!("run/{failed}"), "--into", "main"]);
    let number = review["id"].to_string();
    let shown = lake.json(&["review", "show", &number]);
    assert_eq!(
        check(&shown, "expectation has_rows")["passed"],
        false,
        "{shown}"
    );
    lake.ok_as("reviewer", &["review", "approve", &number]);
    let err = lake.fails(&["review", "merge", &number]);
    assert!(
        err.contains("expectation has_rows failed in its run"),
        "{err}"
    );
    assert_eq!(lake.commits("main"), before + 1);
}

const INCREMENTAL_TOML: &str =
    "[project]\nname = \"inc\"\nnamespace = \"mart\"\npython = \"3.11\"\n";

/// A SQL model merged by key and a Python model appended, both incremental.
const LATEST_SQL: &str = "-- basin: incremental key=id\n\
SELECT id, upper(name) AS name, amount, _change FROM raw.events\n";

const BIG_PY: &str = r#"
import basin
import pyarrow.compute as pc


@basin.python("3.11")
@basin.model(incremental=True)
def big(events=basin.Model("raw.events")):
    print(f"read {events.num_rows} changed rows")
    new = pc.and_(pc.greater(events["amount"], 10), pc.equal(events["_change"], "insert"))
    return events.filter(new).select(["id", "amount"])
"#;

#[test]
fn incremental_models_read_only_what_changed_and_equal_a_full_refresh() {
    let lake = Lake::new();
    std::fs::create_dir(lake.path().join("proj")).unwrap();
    lake.write("proj/basin.toml", INCREMENTAL_TOML);
    lake.write("proj/latest.sql", LATEST_SQL);
    lake.write("proj/big.py", BIG_PY);
    let import = |name: &str, csv: &str, mode: &str| {
        lake.write(name, csv);
        lake.ok(&["import", name, "--table", "raw.events", "--mode", mode]);
    };
    import(
        "a.csv",
        "id,name,amount\n1,ada,5\n2,bob,20\n3,cy,30\n",
        "append",
    );
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["run", "proj"];
        args.extend_from_slice(extra);
        let record = lake.json(&args);
        assert_eq!(record["status"], "succeeded", "{record}");
        record
    };
    let big_logs = |record: &serde_json::Value| -> String {
        let big = record["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "big");
        big.unwrap()["logs"].to_string()
    };
    let first = run(&[]);
    assert!(big_logs(&first).contains("read 3 changed rows"), "{first}");

    // New rows, and a rewrite of every row with one changed and one gone: each run reads
    // only those changes.
    import("b.csv", "id,name,amount\n4,dee,40\n5,eve,1\n", "append");
    let second = run(&[]);
    assert!(
        big_logs(&second).contains("read 2 changed rows"),
        "{second}"
    );
    import(
        "c.csv",
        "id,name,amount\n1,ada,5\n2,bobby,25\n3,cy,30\n4,dee,40\n6,fay,60\n",
        "replace",
    );
    let third = run(&[]);
    // bob's row changed (a delete and an insert), eve's went, fay's came.
    assert!(big_logs(&third).contains("read 4 changed rows"), "{third}");
    let rows = |sql: &str| lake.ok(&["query", sql, "--format", "csv"]);
    let latest = "SELECT id, name, amount FROM mart.latest ORDER BY id";
    let recomputed = "SELECT id, upper(name) AS name, amount FROM raw.events ORDER BY id";
    assert_eq!(rows(latest), rows(recomputed));
    // Appended: every insert over 10 once, in the order the runs saw them.
    assert_eq!(
        rows("SELECT id, amount FROM mart.big ORDER BY id, amount"),
        "id,amount\n2,20\n2,25\n3,30\n4,40\n6,60\n"
    );
    // A replay starts from the commit the run read, so from the same cursor: the same rows.
    let replay = lake.json(&["runs", "replay", third["id"].as_str().unwrap()]);
    assert_eq!(replay["identical"], true, "{replay}");
    assert_eq!(replay["outputs"].as_array().unwrap().len(), 2, "{replay}");
    // Nothing changed: nothing read, nothing written.
    let fourth = run(&[]);
    assert!(
        big_logs(&fourth).contains("read 0 changed rows"),
        "{fourth}"
    );
    assert_eq!(rows(latest), rows(recomputed));

    // --full-refresh rebuilds from every row, to the same table.
    let before = rows(latest);
    let full = run(&["--full-refresh"]);
    assert_eq!(full["full_refresh"], true);
    assert!(big_logs(&full).contains("read 5 changed rows"), "{full}");
    assert_eq!(rows(latest), before);
    assert_eq!(
        rows("SELECT id, amount FROM mart.big ORDER BY id"),
        "id,amount\n2,25\n3,30\n4,40\n6,60\n"
    );
    // A SQL header that declares something else is named.
    lake.write(
        "proj/latest.sql",
        "-- basin: incremental keys=id\nSELECT 1 AS id\n",
    );
    let out = lake.fails(&["run", "proj"]);
    assert!(
        out.contains("`keys=id` is not something a SQL model declares"),
        "{out}"
    );
}
