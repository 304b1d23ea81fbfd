//! Snapshot expiry and catalog history retention, through the real binary.

use crate::common::Lake;

/// The snapshot ids of `sales.orders` on `at`, oldest first.
fn snapshots(lake: &Lake, at: &str) -> Vec<String> {
    let show = lake.json(&["table", "show", "sales.orders", "--ref", at]);
    show["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_id"].as_str().unwrap().to_string())
        .collect()
}

fn current(lake: &Lake, at: &str) -> String {
    let show = lake.json(&["table", "show", "sales.orders", "--ref", at]);
    show["current_snapshot_id"].as_str().unwrap().to_string()
}

fn expire(lake: &Lake, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["table", "expire", "sales.orders"];
    args.extend(extra);
    lake.json(&args)
}

#[test]
fn expire_drops_old_snapshots_but_never_the_current_one_and_dry_run_changes_nothing() {
    let lake = Lake::with_orders();
    lake.append_orders("main");
    lake.append_orders("main");
    let before = snapshots(&lake, "main");
    let commits = lake.commits("main");
    assert_eq!(before.len(), 3);

    // Every snapshot is older than 1ms by now; only the current one stays.
    let dry = expire(&lake, &["--older-than", "1ms", "--dry-run"]);
    assert_eq!(dry["snapshots_expired"], 2, "{dry}");
    assert!(dry["commit"].is_null());
    assert_eq!(snapshots(&lake, "main"), before);
    assert_eq!(lake.commits("main"), commits);

    let report = expire(&lake, &["--older-than", "1ms"]);
    assert_eq!(report["snapshots_expired"], 2, "{report}");
    let expired: Vec<&str> = report["expired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_id"].as_str().unwrap())
        .collect();
    assert_eq!(expired, before[..2].to_vec());
    assert_eq!(snapshots(&lake, "main"), vec![before[2].clone()]);
    assert_eq!(current(&lake, "main"), before[2]);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "6"
    );
    let log = lake.json(&["log", "-n", "1"]);
    assert_eq!(log[0]["message"], "expire sales.orders: 2 snapshots");
    // Time travel to a commit before the expiry still reads its own metadata.
    let first = lake.json(&["log", "-n", "1000"]).as_array().unwrap().len();
    assert_eq!(first, commits + 1);

    // Nothing left to expire: no commit.
    let again = expire(&lake, &["--older-than", "1ms"]);
    assert_eq!(again["snapshots_expired"], 0);
    assert!(again["commit"].is_null());
    assert_eq!(lake.commits("main"), commits + 1);
}

#[test]
fn expire_keeps_the_newest_snapshots_retain_last_asks_for() {
    let lake = Lake::with_orders();
    for _ in 0..3 {
        lake.append_orders("main");
    }
    let before = snapshots(&lake, "main");
    let report = expire(&lake, &["--older-than", "1ms", "--retain-last", "3"]);
    assert_eq!(report["snapshots_expired"], 1, "{report}");
    assert_eq!(snapshots(&lake, "main"), before[1..].to_vec());
    let err = lake.fails(&["table", "expire", "sales.orders", "--retain-last", "0"]);
    assert!(
        err.contains("current snapshot") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn expire_never_drops_a_snapshot_a_tag_reads() {
    let lake = Lake::with_orders();
    lake.append_orders("main");
    lake.ok(&["tag", "create", "v1"]);
    lake.append_orders("main");
    let tagged = current(&lake, "v1");
    let report = expire(&lake, &["--older-than", "1ms"]);
    assert_eq!(report["snapshots_expired"], 1, "{report}");
    assert_eq!(report["kept_for_tags"], 1, "{report}");
    assert!(snapshots(&lake, "main").contains(&tagged));
    assert_eq!(lake.scalar("SELECT count(*) FROM sales.orders", "v1"), "4");
}

#[test]
fn expire_follows_maintenance_settings_and_is_per_branch() {
    let lake = Lake::with_orders();
    lake.append_orders("main");
    lake.ok(&["branch", "create", "dev"]);
    lake.append_orders("dev");
    // The default keeps a week: nothing goes.
    assert_eq!(expire(&lake, &[])["snapshots_expired"], 0);
    lake.write(
        "basin.toml",
        "[maintenance]\nkeep_snapshots = \"1ms\"\nkeep_last = 2\n",
    );
    let report = expire(&lake, &["--branch", "dev"]);
    assert_eq!(report["retain_last"], 2);
    assert_eq!(report["snapshots_expired"], 1, "{report}");
    assert_eq!(snapshots(&lake, "dev").len(), 2);
    assert_eq!(snapshots(&lake, "main").len(), 2, "main is another branch");
    lake.write("basin.toml", "[maintenance]\nkeep_snapshots = \"off\"\n");
    let report = expire(&lake, &[]);
    assert!(report["older_than_ms"].is_null());
    assert_eq!(report["snapshots_expired"], 0);
    lake.write("basin.toml", "[maintenance]\nkeep_last = 0\n");
    let err = lake.fails(&["table", "expire", "sales.orders"]);
    assert!(err.contains("keep_last") && err.contains("hint:"), "{err}");
}

#[test]
fn gc_removes_history_no_ref_needs_and_log_says_where_it_was_cut() {
    let lake = Lake::with_orders();
    lake.append_orders("main");
    lake.ok(&["tag", "create", "v1"]);
    lake.ok(&["branch", "create", "dev"]);
    lake.append_orders("dev");
    lake.append_orders("main");
    let old = lake.json(&["log", "-n", "1000"]);
    let old_commit = old[old.as_array().unwrap().len() - 2]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reads = |at: &str| lake.scalar("SELECT count(*) FROM sales.orders", at);
    let before: Vec<String> = ["main", "dev", "v1"].iter().map(|r| reads(r)).collect();

    // The default keeps 30 days: nothing goes.
    let kept = lake.json(&["gc"]);
    assert_eq!(kept["history_commits_removed"], 0, "{kept}");
    lake.write("basin.toml", "[maintenance]\nkeep_history = \"1ms\"\n");
    let dry = lake.json(&["gc", "--dry-run"]);
    let removed = dry["history_commits_removed"].as_u64().unwrap();
    assert!(removed >= 2, "{dry}");
    assert_eq!(lake.commits("main"), old.as_array().unwrap().len());

    let report = lake.json(&["gc"]);
    assert_eq!(report["history_commits_removed"].as_u64(), Some(removed));
    // main keeps its head and the tag's commit (the merge base with dev and v1).
    let log = lake.ok(&["log"]);
    assert!(
        log.contains("history before") && log.contains("(keep_history = 1ms)"),
        "{log}"
    );
    assert_eq!(lake.commits("main"), 2);
    assert!(lake.json(&["log"]).as_array().unwrap()[1]["history_cut"].is_object());
    let after: Vec<String> = ["main", "dev", "v1"].iter().map(|r| reads(r)).collect();
    assert_eq!(after, before);
    let err = lake.fails(&[
        "query",
        "SELECT 1",
        "--ref",
        &format!("main@{}", &old_commit[..12]),
    ]);
    assert!(err.contains(&old_commit[..12]), "{err}");
    // dev still merges three-way into main.
    lake.ok(&["merge", "dev"]);
    assert_eq!(reads("main"), "8");
}

#[test]
fn gc_removes_records_of_runs_finished_keep_runs_ago_once_their_branch_is_gone() {
    let lake = Lake::new();
    std::fs::create_dir(lake.path().join("p")).unwrap();
    std::fs::write(
        lake.path().join("p/basin.toml"),
        "[project]\nname = \"p\"\nnamespace = \"shop\"\n",
    )
    .unwrap();
    std::fs::write(lake.path().join("p/one.sql"), "SELECT 1 AS one\n").unwrap();
    lake.ok(&["run", "p"]); // merged: its branch is gone at once
    lake.ok(&["run", "p", "--dry-run", "--no-cache"]); // keeps its branch for a week
    assert_eq!(lake.json(&["runs", "ls"]).as_array().unwrap().len(), 2);
    // The default keeps 90 days.
    assert_eq!(lake.json(&["gc"])["runs_removed"], 0);
    lake.write("basin.toml", "[maintenance]\nkeep_runs = \"1ms\"\n");
    let dry = lake.json(&["gc", "--dry-run"]);
    assert_eq!(dry["runs_removed"], 1, "{dry}");
    assert_eq!(lake.json(&["runs", "ls"]).as_array().unwrap().len(), 2);
    assert_eq!(lake.json(&["gc"])["runs_removed"], 1);
    let left = lake.json(&["runs", "ls"]);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["status"], "dry-run", "its branch still stands");
}
