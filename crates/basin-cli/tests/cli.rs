//! Drives the real `basin` binary in fresh temporary lakehouses.

#[path = "cli/branches.rs"]
mod branches;
mod common;
#[path = "cli/formats.rs"]
mod formats;
#[path = "cli/maintenance.rs"]
mod maintenance;
#[path = "cli/protection.rs"]
mod protection;

use std::process::Command;

use common::{Lake, ORDERS};

#[test]
fn import_query_and_show() {
    let lake = Lake::with_orders();
    assert_eq!(
        lake.scalar("SELECT sum(amount) FROM sales.orders", "main"),
        "13.75"
    );
    let show = lake.json(&["table", "show", "sales.orders"]);
    assert_eq!(show["rows"], 2);
    assert_eq!(show["data_files"], 1);
    assert_eq!(show["columns"][2]["type"], "date");
    let tables = lake.json(&["table", "ls"]);
    assert_eq!(tables[0]["table"], "sales.orders");
}

#[test]
fn explain_shows_projection_and_filter_pushed_into_the_scan() {
    let lake = Lake::with_orders();
    let plan = lake.ok(&[
        "query",
        "EXPLAIN SELECT amount FROM sales.orders WHERE id > 1",
        "--format",
        "csv",
    ]);
    let scan = plan
        .lines()
        .find(|l| l.contains("DataSourceExec"))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(scan.contains("projection=[id, amount]"), "{scan}");
    assert!(scan.contains("predicate=id@0 > 1"), "{scan}");
    assert!(
        scan.contains("pruning_predicate="),
        "row groups are pruned with the filter: {scan}"
    );
}

/// `RUST_LOG=basin_sql=debug` makes a one-shot command say on stderr where a query's time
/// went (planning, optimizing, each scan's files and footers), and leaves stdout to the rows.
#[test]
fn a_query_says_where_its_time_went_when_asked() {
    let lake = Lake::with_orders();
    let args = [
        "query",
        "SELECT sum(amount) FROM sales.orders",
        "--format",
        "csv",
    ];
    let quiet = lake.run(&args);
    let traced = lake.run_with(&[("RUST_LOG", "basin_sql=debug")], &args);
    assert!(traced.status.success());
    assert_eq!(traced.stdout, quiet.stdout);
    let (quiet, traced) = (
        String::from_utf8_lossy(&quiet.stderr),
        String::from_utf8_lossy(&traced.stderr),
    );
    assert!(!quiet.contains("DEBUG"), "{quiet}");
    for line in [
        "statement planned",
        "plan optimized",
        "physical plan made",
        "data files planned",
        "data files' footers read",
    ] {
        let found = traced.lines().find(|l| l.contains(line));
        let found = found.unwrap_or_else(|| panic!("no `{line}` in:\n{traced}"));
        assert!(found.contains("ms="), "{found}");
    }
    assert!(traced.contains("table=sales.orders"), "{traced}");
}

#[test]
fn malformed_row_names_file_line_and_column_and_commits_nothing() {
    let lake = Lake::with_orders();
    let before = lake.commits("main");
    lake.write(
        "bad.csv",
        "id,amount,day\n3,1.00,2024-01-03\n4,lots,2024-01-04\n",
    );
    let err = lake.fails(&["import", "bad.csv", "--table", "sales.orders"]);
    assert!(
        err.contains("bad.csv:3: column `amount`: `lots` is not a valid DECIMAL(18,2)"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    lake.write("short.csv", "id,amount,day\n5,1.00\n");
    let err = lake.fails(&["import", "short.csv", "--table", "sales.orders"]);
    assert!(err.contains("short.csv:2: wrong number of fields"), "{err}");
    // Past the rows sampled for inference, the reader finds errors with their lines too.
    let mut long = String::from("id,amount,day\n");
    (0..20_000).for_each(|i| long.push_str(&format!("{i},1.00,2024-01-01\n")));
    lake.write("late_short.csv", &format!("{long}1,1.00\n"));
    let err = lake.fails(&["import", "late_short.csv", "--table", "sales.orders"]);
    assert!(
        err.contains("late_short.csv:20002: wrong number of fields"),
        "{err}"
    );
    lake.write("late_bad.csv", &format!("{long}x,1.00,2024-01-01\n"));
    let err = lake.fails(&["import", "late_bad.csv", "--table", "sales.orders"]);
    assert!(
        err.contains("late_bad.csv:20002: column `id`: `x` is not a valid BIGINT"),
        "{err}"
    );
    assert_eq!(lake.commits("main"), before);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "2"
    );
}

#[test]
fn a_bad_file_among_good_ones_commits_none_of_them() {
    let lake = Lake::new();
    std::fs::create_dir(lake.path().join("in")).unwrap();
    lake.write("in/a.csv", ORDERS);
    lake.write("in/b.csv", "id,amount,day\n9,x,2024-01-09\n");
    let err = lake.fails(&["import", "in", "--table", "sales.orders"]);
    assert!(err.contains("b.csv:2"), "{err}");
    assert!(lake.json(&["table", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn new_columns_need_consent_and_then_evolve_the_schema() {
    let lake = Lake::with_orders();
    lake.write(
        "wider.csv",
        "id,amount,day,channel\n3,1.00,2024-01-03,web\n",
    );
    let err = lake.fails(&["import", "wider.csv", "--table", "sales.orders"]);
    assert!(
        err.contains("column `channel` is not in table `sales.orders`"),
        "{err}"
    );
    assert!(err.contains("--allow-new-columns"), "{err}");
    lake.ok(&[
        "import",
        "wider.csv",
        "--table",
        "sales.orders",
        "--allow-new-columns",
    ]);
    assert_eq!(
        lake.scalar(
            "SELECT count(channel) || '/' || count(*) FROM sales.orders",
            "main"
        ),
        "1/3"
    );
}

#[test]
fn import_mistakes_name_the_fix() {
    let lake = Lake::with_orders();
    // A renamed column: the table column the file lacks is the likely meaning.
    lake.write("renamed.csv", "id,amt,day\n3,1.00,2024-01-03\n");
    let err = lake.fails(&["import", "renamed.csv", "--table", "sales.orders"]);
    assert!(
        err.contains("column `amt` is not in table `sales.orders`")
            && err.contains("hint: did you mean `amount`? To add `amt` as a new column, pass --allow-new-columns"),
        "{err}"
    );
    // Another delimiter: the header reads as one column, for a new table as for an old one.
    lake.write("semi.csv", "id;amount;day\n3;1.00;2024-01-03\n");
    for table in ["sales.orders", "sales.fresh"] {
        let err = lake.fails(&["import", "semi.csv", "--table", table]);
        assert!(
            err.contains("semi.csv:1: the header `id;amount;day` reads as one column")
                && err.contains("pass --delimiter ';'"),
            "{err}"
        );
    }
    lake.ok(&[
        "import",
        "semi.csv",
        "--table",
        "sales.orders",
        "--delimiter",
        ";",
    ]);
    // A column the file lacks: imported as null, with a warning on stderr.
    lake.write("narrow.csv", "id,amount\n4,2.00\n");
    let out = lake.run(&["import", "narrow.csv", "--table", "sales.orders"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: narrow.csv has no column `day`: its rows are null there"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("warning"));
    assert_eq!(
        lake.scalar(
            "SELECT count(*) FROM sales.orders WHERE day IS NULL",
            "main"
        ),
        "1"
    );
}

#[test]
fn mistakes_get_did_you_mean_hints() {
    let lake = Lake::with_orders();
    let err = lake.fails(&["query", "SELECT 1", "--ref", "mian"]);
    assert!(
        err.contains("did you mean `main`?") && err.contains("branches: main"),
        "{err}"
    );
    let err = lake.fails(&["query", "SELECT * FROM sales.order"]);
    assert!(
        err.contains("table `sales.order` does not exist")
            && err.contains("did you mean `sales.orders`?"),
        "{err}"
    );
    let err = lake.fails(&["query", "SELECT * FROM orders"]);
    assert!(
        err.contains("table `orders` does not exist in namespace `default`")
            && err.contains("did you mean `sales.orders`, or `-n sales`?"),
        "{err}"
    );
    assert_eq!(
        lake.ok(&[
            "query",
            "SELECT count(*) FROM orders",
            "-n",
            "sales",
            "--format",
            "csv"
        ]),
        "count(*)\n2\n"
    );
    let err = lake.fails(&["query", "SELEC * FROM sales.orders"]);
    assert!(
        err.contains(
            "syntax error at or near \"SELEC\"\nLINE 1: SELEC * FROM sales.orders\n        ^"
        ) && err.contains("hint: expected an SQL statement")
            && !err.contains("ParserError"),
        "{err}"
    );
    let err = lake.fails(&["query", "SELECT * FROM sales.orders WHERE"]);
    assert!(
        err.contains("syntax error at end of input\nLINE 1: SELECT * FROM sales.orders WHERE\n"),
        "{err}"
    );
    let err = lake.fails(&["query", "SELECT amount_x FROM sales.orders"]);
    assert!(
        err.contains("column `amount_x` does not exist") && err.contains("did you mean `amount`?"),
        "{err}"
    );
    std::fs::create_dir_all(lake.path().join(".basin/buckets/landing")).unwrap();
    let err = lake.fails(&["put", "orders.csv", "landin/orders.csv"]);
    assert!(
        err.contains("no bucket `landin`") && err.contains("did you mean `landing`?"),
        "{err}"
    );
    let err = lake.fails(&["put", "orders.csv", "zzz/orders.csv"]);
    assert!(err.contains("buckets: landing"), "{err}");
    let err = lake.fails(&["branch", "rm", "main"]);
    assert!(err.contains("`main` cannot be deleted"), "{err}");
    lake.ok(&["branch", "create", "dev"]);
    lake.ok(&["checkout", "dev"]);
    let err = lake.fails(&["branch", "rm", "dev"]);
    assert!(err.contains("the branch you are on"), "{err}");
}

#[test]
fn commands_find_the_lakehouse_from_a_subfolder_and_refuse_elsewhere() {
    let lake = Lake::new();
    let sub = lake.path().join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["branch", "ls"])
        .current_dir(&sub)
        .output()
        .unwrap();
    assert!(out.status.success());
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["branch", "ls"])
        .current_dir(elsewhere.path())
        .env_remove("BASIN_HOME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hint: create one with `basin init`"));
}

#[test]
fn concurrent_imports_into_one_table_lose_no_rows() {
    let lake = Lake::with_orders();
    let children: Vec<_> = (0..6)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_basin"))
                .args(["import", "orders.csv", "--table", "sales.orders"])
                .current_dir(lake.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        lake.scalar("SELECT count(*) FROM sales.orders", "main"),
        "14"
    );
    assert_eq!(
        lake.json(&["table", "show", "sales.orders"])["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

#[test]
fn environments_are_built_once_listed_and_removed() {
    let lake = Lake::new();
    let first = lake.json(&["env", "build", "--python", "3.11"]);
    assert_eq!(first["built"], true);
    let again = lake.json(&["env", "build", "--python", "3.11"]);
    assert_eq!(again["built"], false);
    assert_eq!(again["env"], first["env"]);
    let listed = lake.json(&["env", "ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let err = lake.fails(&["env", "build", "--pip", "pandas"]);
    assert!(
        err.contains("`pandas` is not pinned") && err.contains("hint:"),
        "{err}"
    );
    lake.ok(&["env", "rm", &first["env"].as_str().unwrap()[..6]]);
    assert!(lake.json(&["env", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn basin_toml_errors_show_the_line_a_caret_and_the_key_meant() {
    let lake = Lake::new();
    lake.write("basin.toml", "[sql]\nquery_timout = \"5s\"\n");
    let err = lake.fails(&["query", "SELECT 1"]);
    assert!(
        err.contains("basin.toml:2:1: unknown field `query_timout`")
            && err.contains("\n  |\n2 | query_timout = \"5s\"\n  | ^^^^^^^^^^^^\n")
            && err.contains("hint: did you mean `query_timeout`?"),
        "{err}"
    );
    lake.write("basin.toml", "[sql]\nquery_timeout = \n");
    let err = lake.fails(&["query", "SELECT 1"]);
    assert!(
        err.contains("basin.toml:2:17: ")
            && err.contains("2 | query_timeout = \n  |                 ^\n"),
        "{err}"
    );
}

#[test]
fn datafusion_options_come_from_basin_toml_and_are_checked() {
    let lake = Lake::with_orders();
    assert_eq!(
        lake.ok(&[
            "query",
            "SELECT count(ID) AS n FROM sales.orders",
            "--format",
            "csv"
        ]),
        "n\n2\n"
    );
    // DataFusion's own option, applied to every session: names keep their case.
    lake.write(
        "basin.toml",
        "[sql.datafusion]\n\"sql_parser.enable_ident_normalization\" = false\n",
    );
    let err = lake.fails(&["query", "SELECT count(ID) AS n FROM sales.orders"]);
    assert!(err.contains("column `ID` does not exist"), "{err}");
    lake.write("basin.toml", "[sql.datafusion]\n\"optimizer.nope\" = 1\n");
    let err = lake.fails(&["query", "SELECT 1"]);
    assert!(
        err.contains("[sql.datafusion] datafusion.optimizer.nope") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn hash_joins_compact_the_string_views_they_build_from() {
    let lake = Lake::new();
    lake.write("people.csv", "id,name\n1,ada\n2,bob\n");
    lake.write("visits.csv", "person,city\n1,paris\n2,oslo\n1,rome\n");
    lake.ok(&["import", "people.csv", "--table", "crm.people"]);
    lake.ok(&["import", "visits.csv", "--table", "crm.visits"]);
    let join = "SELECT p.name, v.city FROM crm.people p JOIN crm.visits v ON p.id = v.person";
    let plan = lake.ok(&["query", &format!("EXPLAIN {join}"), "--format", "csv"]);
    assert!(plan.contains("CompactViewsExec"), "{plan}");
    let rows = lake.ok(&["query", &format!("{join} ORDER BY city"), "--format", "csv"]);
    assert_eq!(rows, "name,city\nbob,oslo\nada,paris\nada,rome\n");
}

/// The build links `basin` with packed relative relocations (build.rs) wherever glibc runs
/// them (2.36 and later): ~7 MB less for the loader to apply at every start.
#[test]
fn the_binary_packs_its_relocations_where_glibc_runs_them() {
    let glibc = Command::new("getconf").arg("GNU_LIBC_VERSION").output();
    let version = glibc
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            let (major, minor) = s.trim().strip_prefix("glibc ")?.split_once('.')?;
            Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
        });
    let Some(version) = version.filter(|v| *v >= (2, 36)) else {
        eprintln!("skipped: no glibc 2.36 or later here ({version:?}), so no packed relocations");
        return;
    };
    let dynamic = Command::new("readelf")
        .args(["--dynamic", env!("CARGO_BIN_EXE_basin")])
        .output()
        .expect("readelf (binutils) runs");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic.contains("(RELR)"),
        "glibc {version:?} runs DT_RELR, but `basin` has no RELR table:\n{dynamic}"
    );
}
