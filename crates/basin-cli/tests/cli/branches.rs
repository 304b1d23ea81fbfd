//! Branches, merges, tags and time travel through the real binary: changes isolated until
//! merged, appends on both sides merged and other changes refused as conflicts, reverts.

use crate::common::Lake;

#[test]
fn branches_isolate_changes_until_merged() {
    let lake = Lake::with_orders();
    lake.ok(&["branch", "create", "dev"]);
    lake.append_orders("dev");
    lake.write("customers.csv", "id,name\n1,ann\n");
    lake.ok(&[
        "import",
        "customers.csv",
        "--table",
        "sales.customers",
        "--branch",
        "dev",
    ]);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "2"
    );
    assert_eq!(lake.scalar("SELECT count(*) FROM sales.orders", "dev"), "4");

    let diff = lake.json(&["diff", "main", "dev"]);
    let changes: Vec<(String, String)> = diff
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["key"].as_str().unwrap().into(),
                d["change"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("sales.customers".into(), "added".into()),
            ("sales.orders".into(), "changed".into())
        ]
    );
    // Rows and files per table: dev appended two orders in one file; customers are new.
    let orders = &diff[1];
    assert_eq!(
        (
            orders["rows_added"].as_u64(),
            orders["rows_removed"].as_u64()
        ),
        (Some(2), Some(0)),
        "{orders}"
    );
    assert_eq!(orders["files_added"], 1, "{orders}");
    assert!(orders["from_snapshot"].is_string() && orders["to_snapshot"].is_string());
    assert_eq!(diff[0]["rows_added"], 1, "{diff}");
    let same = lake.run(&["diff", "main", "main"]);
    assert!(
        String::from_utf8_lossy(&same.stderr).contains("no differences between `main` and `main`"),
        "{same:?}"
    );

    let dry = lake.json(&["merge", "dev", "--into", "main", "--dry-run"]);
    assert!(dry["commit"].is_null());
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "2"
    );
    lake.ok(&["merge", "dev", "--into", "main"]);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "4"
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.customers", "main"),
        "1"
    );
}

#[test]
fn appends_on_both_sides_merge_and_other_changes_conflict() {
    let lake = Lake::with_orders();
    lake.ok(&["branch", "create", "dev"]);
    lake.append_orders("dev");
    lake.append_orders("main");
    let report = lake.json(&["merge", "dev", "--into", "main"]);
    assert_eq!(report["changes"][0]["appends_merged"], true);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "6"
    );

    // A replace on one side and an append on the other is a real conflict: nothing written.
    lake.ok(&["branch", "create", "fix"]);
    lake.ok(&[
        "import",
        "orders.csv",
        "--table",
        "sales.orders",
        "--branch",
        "fix",
        "--mode",
        "replace",
    ]);
    lake.append_orders("main");
    let before = lake.commits("main");
    let err = lake.fails(&["merge", "fix", "--into", "main"]);
    assert!(err.contains("changed on both sides: sales.orders"), "{err}");
    assert_eq!(lake.commits("main"), before);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "8"
    );
}

#[test]
fn tags_and_commit_refs_time_travel_and_revert_restores() {
    let lake = Lake::with_orders();
    lake.ok(&["tag", "create", "v1"]);
    let first = lake.json(&["log"])[0]["id"].as_str().unwrap().to_string();
    lake.ok(&[
        "import",
        "orders.csv",
        "--table",
        "sales.orders",
        "--mode",
        "replace",
    ]);
    lake.ok(&["import", "orders.csv", "--table", "sales.orders"]);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "4"
    );
    assert_eq!(lake.scalar("SELECT count(*) FROM sales.orders", "v1"), "2");
    assert_eq!(
        lake.scalar(
            "SELECT count(*) FROM sales.orders",
            &format!("main@{}", &first[..8])
        ),
        "2"
    );
    lake.ok(&["table", "revert", "sales.orders", "--to", "v1"]);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "2"
    );
    let err = lake.fails(&[
        "import",
        "orders.csv",
        "--table",
        "sales.orders",
        "--branch",
        "v1",
    ]);
    assert!(err.contains("not a branch head"), "{err}");
}

#[test]
fn a_long_lived_branch_merges_its_appends_again_and_again() {
    let lake = Lake::with_orders();
    lake.ok(&["branch", "create", "dev"]);
    for round in 1..=3 {
        lake.append_orders("dev");
        lake.append_orders("main");
        let report = lake.json(&["merge", "dev", "--into", "main"]);
        assert_eq!(
            report["changes"][0]["appends_merged"], true,
            "round {round}"
        );
        // main: its start, its own appends and every dev append exactly once
        assert_eq!(
            lake.scalar("SELECT count(*) FROM sales.orders", "main"),
            (2 + 4 * round).to_string()
        );
    }
}

#[test]
fn an_existing_iceberg_table_is_registered_without_copying_and_works_as_any_other() {
    let lake = Lake::with_orders();
    let shown = lake.json(&["table", "show", "sales.orders"]);
    let metadata = shown["metadata_location"].as_str().unwrap().to_string();
    // Its metadata and files stay where they are when the catalog forgets it.
    lake.ok(&["table", "rm", "sales.orders"]);
    lake.ok(&["table", "register", "sales.kept", &metadata]);
    assert_eq!(lake.scalar("SELECT count(*) FROM sales.kept", "main"), "2");
    let kept = lake.json(&["table", "show", "sales.kept"]);
    assert_eq!(kept["metadata_location"], metadata.as_str(), "not copied");
    assert_eq!(
        kept["snapshots"], shown["snapshots"],
        "its history came along"
    );
    // Branches, merges and maintenance, as on any table.
    lake.ok(&["branch", "create", "dev"]);
    lake.ok(&[
        "import",
        "orders.csv",
        "--table",
        "sales.kept",
        "--branch",
        "dev",
    ]);
    lake.ok(&["merge", "dev"]);
    assert_eq!(lake.scalar("SELECT count(*) FROM sales.kept", "main"), "4");
    lake.ok(&["table", "compact", "sales.kept"]);
    assert_eq!(lake.scalar("SELECT count(*) FROM sales.kept", "main"), "4");
    // The same name again is refused unless asked to overwrite; a namespace must exist.
    let out = lake.fails(&["table", "register", "sales.kept", &metadata]);
    assert!(
        out.contains("already exists") && out.contains("hint:"),
        "{out}"
    );
    lake.ok(&["table", "register", "sales.kept", &metadata, "--overwrite"]);
    assert_eq!(lake.scalar("SELECT count(*) FROM sales.kept", "main"), "2");
    // Files outside the warehouse are refused: gc could not keep them.
    let other = Lake::with_orders();
    let foreign = other.json(&["table", "show", "sales.orders"])["metadata_location"]
        .as_str()
        .unwrap()
        .to_string();
    let out = lake.fails(&["table", "register", "sales.foreign", &foreign]);
    assert!(out.contains("hint:"), "{out}");
    assert!(
        lake.fails(&["query", "SELECT * FROM sales.foreign"])
            .contains("sales.foreign")
    );
}

#[test]
fn the_graph_draws_every_branch_and_merge_with_each_commit_before_its_parents() {
    let lake = Lake::with_orders();
    lake.ok(&["branch", "create", "dev"]);
    lake.append_orders("dev");
    lake.append_orders("main");
    lake.ok(&["merge", "dev", "--into", "main"]);
    lake.append_orders("dev");
    lake.ok(&["branch", "create", "run/abc", "--from", "dev"]);

    let text = lake.ok(&["log", "--graph"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert!(
        lines[0].starts_with("* ") && lines[0].contains("(dev)") && !text.contains("run/abc"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("| * ")
            && lines[1].contains("(main)")
            && lines[1].contains("[merges "),
        "{text}"
    );
    assert!(lines[2].starts_with("| * "), "{text}");
    assert!(lines[3].starts_with("* | "), "{text}");
    assert_eq!(lines[4], "|/", "{text}");
    assert!(lines[5].starts_with("* "), "{text}");
    assert!(
        lines[6].starts_with("* ") && lines[6].contains("initialize"),
        "{text}"
    );

    let graph = lake.json(&["log", "--graph"]);
    let rows = graph.as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for (i, row) in rows.iter().enumerate() {
        for parent in [&row["parent"], &row["merge_parent"]] {
            if let Some(p) = parent.as_str() {
                let at = ids
                    .iter()
                    .position(|id| *id == p)
                    .expect("a parent in the graph");
                assert!(at > i, "{} comes after its parent {p}", ids[i]);
            }
        }
    }
    let columns: Vec<u64> = rows.iter().map(|r| r["column"].as_u64().unwrap()).collect();
    assert_eq!(columns, [0, 1, 1, 0, 0, 0]);
    assert_eq!(rows[1]["refs"], serde_json::json!(["main"]));
    // Run branches only when asked for: at dev's head, beside it.
    let runs = lake.json(&["log", "--graph", "--runs"]);
    assert_eq!(runs[0]["refs"], serde_json::json!(["dev", "run/abc"]));
}
