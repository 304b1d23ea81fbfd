//! Pipelines run again (`basin run`, `basin runs replay`): an unchanged project reuses its
//! outputs and an edit reruns its descendants, replays rerun the stored code, append models
//! grow on every run, concurrent runs merge three ways, and SQL models read fresh outputs.

use crate::pipelines::{project, run_id};

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
