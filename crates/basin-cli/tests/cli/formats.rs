//! Import formats and dialects through the real binary: JSON and Parquet files, exact
//! decimals and text of any script, CSV delimiters, quotes and headers, typed JSON dates;
//! and the generated outputs: shell completions and manual pages.

use crate::common::Lake;

#[test]
fn json_and_parquet_import() {
    let lake = Lake::new();
    lake.write(
        "e.jsonl",
        "{\"user\":\"a\",\"n\":1}\n{\"user\":\"b\",\"n\":2}\n",
    );
    lake.ok(&["import", "e.jsonl", "--table", "app.events"]);
    let out = lake.path().join("events.parquet");
    lake.ok(&[
        "query",
        "SELECT * FROM app.events",
        "--format",
        "parquet",
        "-o",
        out.to_str().unwrap(),
    ]);
    lake.ok(&["import", out.to_str().unwrap(), "--table", "app.copy"]);
    assert_eq!(lake.scalar("SELECT sum(n) FROM app.copy", "main"), "3");
}

#[test]
fn decimals_stay_exact_and_text_of_any_script_imports() {
    let lake = Lake::with_orders();
    lake.write("precise.csv", "id,amount,day\n3,3.14159,2024-01-03\n");
    let err = lake.fails(&["import", "precise.csv", "--table", "sales.orders"]);
    assert!(
        err.contains("precise.csv:2: column `amount`: `3.14159` is not a valid DECIMAL(18,2)"),
        "{err}"
    );
    lake.write(
        "people.csv",
        "name,city\nMüller-Lüdenscheidt,Köln\n東京都千代田区丸の内一丁目,東京\n",
    );
    lake.ok(&["import", "people.csv", "--table", "crm.people"]);
    assert_eq!(
        lake.scalar("SELECT max(length(name)) FROM crm.people", "main"),
        "19"
    );
}

#[test]
fn a_json_key_first_seen_after_the_sample_is_an_error_not_a_loss() {
    let lake = Lake::new();
    let mut text = String::new();
    (0..10_000).for_each(|i| text.push_str(&format!("{{\"n\":{i}}}\n")));
    text.push_str("{\"n\":1,\"late\":\"x\"}\n");
    lake.write("late.jsonl", &text);
    let err = lake.fails(&["import", "late.jsonl", "--table", "app.events"]);
    assert!(err.contains("late.jsonl:10001:"), "{err}");
    assert!(lake.json(&["table", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn csv_dialects_delimiter_quote_and_no_header() {
    let lake = Lake::new();
    lake.write("semi.csv", "name;note\n'a;b';x\n'it''s';y\n");
    lake.ok(&[
        "import",
        "semi.csv",
        "--table",
        "t.semi",
        "--delimiter",
        ";",
        "--quote",
        "'",
    ]);
    assert_eq!(
        lake.scalar(
            "SELECT string_agg(name, '|' ORDER BY name) FROM t.semi",
            "main"
        ),
        "a;b|it's"
    );
    lake.write("bare.csv", "1,x\n2,y\n");
    lake.ok(&["import", "bare.csv", "--table", "t.bare", "--no-header"]);
    assert_eq!(lake.scalar("SELECT sum(column_1) FROM t.bare", "main"), "3");
}

#[test]
fn json_dates_and_timestamps_are_typed() {
    let lake = Lake::new();
    lake.write(
        "e.jsonl",
        "{\"day\":\"2024-01-02\",\"at\":\"2024-01-02T10:00:00Z\",\"zip\":\"02134\"}\n{\"day\":\"2024-02-03\",\"at\":\"2024-02-03T11:30:00Z\",\"zip\":\"10001\"}\n",
    );
    lake.ok(&["import", "e.jsonl", "--table", "app.events"]);
    let show = lake.json(&["table", "show", "app.events"]);
    let types: std::collections::BTreeMap<&str, &str> = show["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    let expected = [("at", "timestamptz"), ("day", "date"), ("zip", "string")];
    assert_eq!(types, expected.into_iter().collect());
    assert_eq!(
        lake.scalar("SELECT max(day) FROM app.events", "main"),
        "2024-02-03"
    );
}

#[test]
fn completions_and_manual_pages_come_from_the_commands() {
    let lake = Lake::new();
    let bash = lake.ok(&["completions", "bash"]);
    assert!(bash.contains("_basin()"), "{bash}");
    // Subcommands and their options are completed, not only the top level.
    assert!(bash.contains("import") && bash.contains("--partition-by"));
    let fish = lake.ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c basin"), "{fish}");
    let unknown = lake.run(&["completions", "tcsh"]);
    assert_eq!(
        unknown.status.code(),
        Some(2),
        "clap refuses an unknown shell"
    );

    let page = lake.ok(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH basin 1"),
        "{page}"
    );
    assert!(page.contains("serverless data lakehouse"));
    lake.ok(&["man", "--dir", "pages"]);
    let import = std::fs::read_to_string(lake.path().join("pages/basin-import.1")).unwrap();
    assert!(
        import.contains("basin\\-import") && import.contains("partition"),
        "{import}"
    );
}
