//! Imports end to end into a SQLite catalog and a local warehouse: what a refused file
//! leaves behind (nothing), and how awkward but valid CSV files land.

use std::path::Path;
use std::sync::Arc;

use basin_catalog::{Catalog, Key, SqlStore, Store};
use basin_core::ErrorKind;
use basin_ingest::{ImportRequest, import};
use basin_table::{Tables, Warehouse};

async fn lakehouse(dir: &Path) -> Tables {
    let store = SqlStore::memory().await.unwrap();
    store.initialize().await.unwrap();
    Tables::new(
        Catalog::new(Arc::new(store)),
        Warehouse::local(&dir.join("warehouse")).unwrap(),
    )
}

async fn import_file(
    tables: &Tables,
    dir: &Path,
    name: &str,
    text: &[u8],
) -> basin_core::Result<basin_ingest::ImportReport> {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let request = ImportRequest::new(vec![path.display().to_string()], "sales.orders", "main");
    import(tables, request, None, None).await
}

/// The table's columns and row count on `main`.
async fn table(tables: &Tables) -> (Vec<String>, u64) {
    let main = tables.catalog().resolve("main").await.unwrap();
    let key = Key::table("sales.orders").unwrap();
    let summary = Tables::summarize(&key, &tables.load(&main, &key).await.unwrap());
    (
        summary.columns.into_iter().map(|c| c.name).collect(),
        summary.rows,
    )
}

#[tokio::test]
async fn a_truncated_csv_is_refused_and_the_table_stays_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let tables = lakehouse(dir.path()).await;
    import_file(&tables, dir.path(), "day1.csv", b"id,note\n1,a\n2,b\n")
        .await
        .unwrap();
    let head = tables.catalog().resolve("main").await.unwrap().commit;

    let e = import_file(
        &tables,
        dir.path(),
        "day2.csv",
        b"id,note\n3,c\n4,\"unterminated\n5,e\n",
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message.contains("day2.csv:3: "), "{}", e.message);
    assert_eq!(tables.catalog().resolve("main").await.unwrap().commit, head);
    assert_eq!(table(&tables).await, (vec!["id".into(), "note".into()], 2));
}

#[tokio::test]
async fn a_bom_and_crlf_file_imports_clean_column_names() {
    let dir = tempfile::tempdir().unwrap();
    let tables = lakehouse(dir.path()).await;
    let report = import_file(
        &tables,
        dir.path(),
        "excel.csv",
        b"\xEF\xBB\xBFid,note\r\n1,a\r\n2,b\r\n",
    )
    .await
    .unwrap();
    assert_eq!(report.rows, 2);
    assert_eq!(table(&tables).await, (vec!["id".into(), "note".into()], 2));
    // The same columns again, without a BOM: they match, so no new column is needed.
    import_file(&tables, dir.path(), "plain.csv", b"id,note\n3,c\n")
        .await
        .unwrap();
    assert_eq!(table(&tables).await.1, 3);
}

#[tokio::test]
async fn an_empty_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let tables = lakehouse(dir.path()).await;
    let e = import_file(&tables, dir.path(), "empty.csv", b"")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message.ends_with("empty.csv: the file is empty"),
        "{}",
        e.message
    );
    assert!(e.hint.is_some());
}

#[tokio::test]
async fn a_header_only_file_is_an_import_of_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let tables = lakehouse(dir.path()).await;
    // A new table: its columns come from the header, as text (no values to type them by).
    let report = import_file(&tables, dir.path(), "none.csv", b"id,note\n")
        .await
        .unwrap();
    assert_eq!((report.rows, report.created), (0, true));
    assert_eq!(table(&tables).await, (vec!["id".into(), "note".into()], 0));
    import_file(&tables, dir.path(), "one.csv", b"id,note\n1,a\n")
        .await
        .unwrap();
    // An existing table: nothing is added, and nothing fails.
    let report = import_file(&tables, dir.path(), "none.csv", b"id,note\n")
        .await
        .unwrap();
    assert_eq!(report.rows, 0);
    assert_eq!(table(&tables).await.1, 1);
}

/// Imports `ints` as an Arrow file's BIGINT column `amount` into `table`.
async fn import_ints(
    tables: &Tables,
    dir: &Path,
    table: &str,
    ints: Vec<i64>,
) -> basin_core::Result<basin_ingest::ImportReport> {
    let path = dir.join(format!("{table}-{}.arrow", ints.len()));
    let batch = arrow::array::RecordBatch::try_from_iter([(
        "amount",
        Arc::new(arrow::array::Int64Array::from(ints)) as arrow::array::ArrayRef,
    )])
    .unwrap();
    let mut writer = arrow::ipc::writer::FileWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    let request = ImportRequest::new(vec![path.display().to_string()], table, "main");
    import(tables, request, None, None).await
}

/// The type `basin table show` gives a table's column.
async fn column_type(tables: &Tables, table: &str, column: &str) -> String {
    let main = tables.catalog().resolve("main").await.unwrap();
    let key = Key::table(table).unwrap();
    let summary = Tables::summarize(&key, &tables.load(&main, &key).await.unwrap());
    summary
        .columns
        .into_iter()
        .find(|c| c.name == column)
        .unwrap()
        .data_type
}

#[tokio::test]
async fn integers_append_to_decimal_and_double_columns_while_exact() {
    let dir = tempfile::tempdir().unwrap();
    let tables = lakehouse(dir.path()).await;
    // What a function returns for an integer-valued file, into tables the CSV import made.
    for (table, csv) in [
        ("sales.money", "amount\n10.50\n"),
        ("sales.ratio", "amount\n1e3\n"),
    ] {
        let path = dir.path().join(format!("{table}.csv"));
        std::fs::write(&path, csv).unwrap();
        let request = ImportRequest::new(vec![path.display().to_string()], table, "main");
        import(&tables, request, None, None).await.unwrap();
    }
    let before = (
        column_type(&tables, "sales.money", "amount").await,
        column_type(&tables, "sales.ratio", "amount").await,
    );
    assert_eq!(
        (before.0.as_str(), before.1.as_str()),
        ("decimal(18, 2)", "double")
    );

    let report = import_ints(&tables, dir.path(), "sales.money", vec![7, -3, 0])
        .await
        .unwrap();
    assert_eq!(report.rows, 3);
    let report = import_ints(
        &tables,
        dir.path(),
        "sales.ratio",
        vec![5, 1 << 53, -(1 << 53)],
    )
    .await
    .unwrap();
    assert_eq!(report.rows, 3);
    assert_eq!(
        (
            column_type(&tables, "sales.money", "amount").await,
            column_type(&tables, "sales.ratio", "amount").await
        ),
        before,
        "the tables keep their types"
    );

    // Past what the column holds exactly: refused, naming the value.
    let e = import_ints(&tables, dir.path(), "sales.ratio", vec![1, (1 << 53) + 1])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message.contains("9007199254740993"), "{}", e.message);
    let e = import_ints(&tables, dir.path(), "sales.money", vec![i64::MAX])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}", e.message);
}

#[tokio::test]
async fn imports_racing_to_create_a_table_all_land_in_the_one_that_won() {
    // As the first batches of a function writing a new table do, on several workers at once:
    // each finds no table and creates one; one creation commits first, the others append to it.
    let dir = tempfile::tempdir().unwrap();
    let tables = lakehouse(dir.path()).await;
    let imports = (0..8).map(|i| {
        let path = dir.path().join(format!("batch{i}.csv"));
        std::fs::write(&path, format!("id,note\n{i},n{i}\n")).unwrap();
        let request = ImportRequest::new(vec![path.display().to_string()], "sales.orders", "main");
        import(&tables, request, None, None)
    });
    let reports: Vec<_> = futures::future::join_all(imports)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(reports.iter().filter(|r| r.created).count(), 1);
    assert_eq!(table(&tables).await, (vec!["id".into(), "note".into()], 8));
}
