//! Protected branches through the real binary: direct writes refused with a hint, merges
//! gated by required checks and approvals, reviews approved by someone else, and each
//! commit naming its author and door.

use crate::common::Lake;

/// `main` protected: a merge into it must find no negative amounts and needs one approval.
const PROTECTED: &str = r#"
[[branches.protect]]
pattern = "main"
checks = ["no_negative_amounts"]
approvals = 1

[checks.no_negative_amounts]
sql = "SELECT id, amount FROM sales.orders WHERE amount < 0"
"#;

fn protected_lake() -> Lake {
    let lake = Lake::with_orders();
    lake.ok(&["branch", "create", "dev"]);
    lake.write("basin.toml", PROTECTED);
    lake
}

#[test]
fn a_protected_branch_refuses_direct_writes_and_unapproved_merges() {
    let lake = protected_lake();
    let before = lake.commits("main");
    let err = lake.fails(&["import", "orders.csv", "--table", "sales.orders"]);
    assert!(err.contains("branch `main` is protected"), "{err}");
    assert!(
        err.contains("hint:") && err.contains("basin review open"),
        "{err}"
    );
    let err = lake.fails(&["namespace", "create", "more"]);
    assert!(err.contains("protected"), "{err}");
    let err = lake.fails(&["branch", "rm", "main"]);
    assert!(err.contains("cannot be deleted"), "{err}");

    lake.append_orders("dev");
    let err = lake.fails(&["merge", "dev", "--into", "main"]);
    assert!(err.contains("needs 1 approval"), "{err}");
    assert!(err.contains("basin review open dev --into main"), "{err}");
    assert_eq!(lake.commits("main"), before, "nothing reached main");

    // An admin's bypass writes directly, and the commit says who.
    lake.ok_as(
        "root",
        &[
            "import",
            "orders.csv",
            "--table",
            "sales.orders",
            "--bypass-protection",
        ],
    );
    let log = lake.json(&["log", "main", "-n", "1"]);
    assert_eq!(log[0]["author"], "root", "{log}");
    assert_eq!(log[0]["door"], "local", "{log}");

    // The audit log has the refusals and the bypass, newest first.
    let audit = lake.json(&["audit", "ls", "--since", "1h"]);
    let newest = &audit[0];
    assert_eq!(
        (&newest["principal"], &newest["outcome"]),
        (&"root".into(), &"ok".into()),
        "{audit}"
    );
    assert!(
        newest["detail"]
            .as_str()
            .unwrap()
            .contains("bypassing branch protection"),
        "{newest}"
    );
    let refused = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "refused")
        .count();
    assert_eq!(
        refused, 3,
        "the import, the namespace and the merge: {audit}"
    );
    let roots = lake.json(&["audit", "ls", "--principal", "root"]);
    assert_eq!(roots.as_array().unwrap().len(), 1, "{roots}");
}

#[test]
fn a_review_merges_once_approved_and_its_checks_pass() {
    let lake = protected_lake();
    lake.write(
        "bad.csv",
        "id,amount,day\n7,-1.00,2024-01-07\n8,2.00,2024-01-08\n",
    );
    lake.ok_as(
        "ana",
        &[
            "import",
            "bad.csv",
            "--table",
            "sales.orders",
            "--branch",
            "dev",
        ],
    );
    let review = lake.json(&["review", "open", "dev", "--into", "main"]);
    let id = review["id"].to_string();
    assert_eq!(review["state"], "open");

    let err = lake.fails(&["review", "approve", &id]);
    assert!(
        err.contains("cannot approve it"),
        "its author cannot approve: {err}"
    );
    lake.ok_as("bo", &["review", "approve", &id]);

    // Approved, but the check finds the negative amount on the would-be result.
    let shown = lake.json(&["review", "show", &id]);
    assert_eq!(shown["approvals_valid"], 1, "{shown}");
    assert_eq!(shown["checks"][0]["name"], "no_negative_amounts", "{shown}");
    assert_eq!(shown["checks"][0]["passed"], false, "{shown}");
    assert_eq!(shown["diff"][0]["rows_added"], 2, "{shown}");
    let before = lake.commits("main");
    let err = lake.fails(&["review", "merge", &id]);
    assert!(
        err.contains("check `no_negative_amounts` returned 1 row"),
        "{err}"
    );
    assert!(
        err.contains("-1.00") || err.contains("-1.0"),
        "the offending row: {err}"
    );
    assert_eq!(lake.commits("main"), before);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "2"
    );
    let branches = lake.json(&["branch", "ls"]);
    assert!(
        !branches.to_string().contains("basin/checks"),
        "the trial branch is gone: {branches}"
    );

    // Fixed on dev: the approval was for the old head, so it no longer counts.
    lake.write(
        "fixed.csv",
        "id,amount,day\n7,1.00,2024-01-07\n8,2.00,2024-01-08\n",
    );
    lake.ok_as(
        "ana",
        &[
            "import",
            "fixed.csv",
            "--table",
            "sales.orders",
            "--branch",
            "dev",
            "--mode",
            "replace",
        ],
    );
    let err = lake.fails(&["review", "merge", &id]);
    assert!(
        err.contains("needs 1 approval") && err.contains("has 0"),
        "{err}"
    );
    lake.ok_as("bo", &["review", "approve", &id]);
    let merged = lake.json(&["review", "merge", &id]);
    assert_eq!(merged["checks"][0]["passed"], true, "{merged}");
    assert_eq!(lake.commits("main"), before + 1, "one merge commit");
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "2"
    );
    assert_eq!(
        lake.scalar("SELECT min(amount) FROM sales.orders", "main"),
        "1.00"
    );
    let review = lake.json(&["review", "show", &id]);
    assert_eq!(review["state"], "merged");
    assert_eq!(review["merged_commit"], merged["commit"]);
    let err = lake.fails(&["review", "merge", &id]);
    assert!(err.contains("is merged already"), "{err}");

    let log = lake.json(&["log", "dev", "-n", "1"]);
    assert_eq!(log[0]["author"], "ana", "{log}");
}
