use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::physical_plan::{FileScanConfig, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::ColumnCache;
use super::scan::keep;

/// Rows per file, and per row group.
const ROWS: i64 = 5000;
const GROUP: usize = 700;

/// A table of two Parquet files of several row groups each: `id`, `name` (nulls, strings
/// longer than a view holds inline) and, in the first file only, `v` (the second was
/// written before `v` was added, so the scan reads it as nulls there).
fn lakehouse(dir: &std::path::Path) {
    for (file, with_v) in [("a.parquet", true), ("b.parquet", false)] {
        let first = if with_v { 0 } else { ROWS };
        let ids: Vec<i64> = (first..first + ROWS).collect();
        let names: Vec<Option<String>> = ids
            .iter()
            .map(|i| (i % 7 != 0).then(|| format!("customer number {:04}", i % 50)))
            .collect();
        let mut fields = vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from(names)),
        ];
        if with_v {
            fields.push(Field::new("v", DataType::Int32, true));
            columns.push(Arc::new(Int32Array::from_iter(
                ids.iter().map(|i| (i % 3 != 0).then_some((i % 100) as i32)),
            )));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(GROUP))
            .build();
        let out = std::fs::File::create(dir.join(file)).unwrap();
        let mut writer = ArrowWriter::try_new(out, batch.schema(), Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
}

/// A session over `lakehouse`'s table `t`, with its files split in byte ranges among two
/// partitions (as DataFusion splits large files), and a schema with `v` in it.
async fn session(dir: &std::path::Path) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .with_batch_size(300)
        .set_usize("datafusion.optimizer.repartition_file_min_size", 1);
    let ctx = SessionContext::new_with_config(config);
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("v", DataType::Int32, true),
    ]);
    let options = ParquetReadOptions::default().schema(&schema);
    ctx.register_parquet("t", dir.to_str().unwrap(), options)
        .await
        .unwrap();
    ctx
}

/// `lakehouse`'s table in a folder of its own, and a session over it.
async fn table() -> (tempfile::TempDir, SessionContext) {
    let dir = tempfile::tempdir().unwrap();
    lakehouse(dir.path());
    let ctx = session(dir.path()).await;
    (dir, ctx)
}

async fn planned(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    let frame = ctx.sql(sql).await.unwrap();
    frame.create_physical_plan().await.unwrap()
}

/// `sql`'s answer as a table, sorted by line, from its plan as built or with
/// kept scans.
async fn answer(ctx: &SessionContext, sql: &str, cache: Option<&Arc<ColumnCache>>) -> String {
    let plan = planned(ctx, sql).await;
    let plan = match cache {
        Some(cache) => keep(plan, cache),
        None => plan,
    };
    let batches = collect(plan, ctx.task_ctx()).await.unwrap();
    let text = pretty_format_batches(&batches).unwrap().to_string();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// Waits for the fills the scans started to end.
async fn settled(cache: &ColumnCache) {
    tokio::time::timeout(Duration::from_secs(5), cache.settled())
        .await
        .expect("the column cache's fills did not end");
}

const QUERIES: [&str; 6] = [
    "SELECT id, name, v FROM t",
    "SELECT name, count(*) AS n, sum(v) AS s FROM t GROUP BY name",
    "SELECT id, name FROM t WHERE id BETWEEN 1200 AND 1300 OR id > 9990",
    "SELECT count(*) AS n FROM t WHERE random() >= 0.0",
    "SELECT count(*) AS n FROM (SELECT id FROM t LIMIT 7) WHERE id >= 0",
    "SELECT v, id FROM t WHERE v IS NULL AND name LIKE '%0049'",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_columns_answer_as_the_files_do() {
    let (_dir, ctx) = table().await;
    // The files are split in ranges: kept row groups must land in one range each.
    let plan = planned(&ctx, QUERIES[0]).await;
    let scan = plan
        .as_any()
        .downcast_ref::<DataSourceExec>()
        .expect("a scan");
    let (config, _) = scan.downcast_to_file_source::<ParquetSource>().unwrap();
    let ranged = |c: &FileScanConfig| {
        c.file_groups
            .iter()
            .flat_map(|g| g.files())
            .any(|f| f.range.is_some())
    };
    assert!(
        ranged(config),
        "{}",
        displayable(plan.as_ref()).indent(true)
    );

    let cache = Arc::new(ColumnCache::new(64 << 20));
    for sql in QUERIES {
        let expected = answer(&ctx, sql, None).await;
        assert!(expected.lines().count() > 4, "{sql}: {expected}");
        // The first read decodes the columns for the next; both answer as the files do.
        assert_eq!(
            answer(&ctx, sql, Some(&cache)).await,
            expected,
            "{sql}, filling"
        );
        settled(&cache).await;
        let hits = cache.stats().hits;
        assert_eq!(
            answer(&ctx, sql, Some(&cache)).await,
            expected,
            "{sql}, kept"
        );
        // `v` is not in the second file, so scans of it read that file as planned.
        if !sql.contains(" v") {
            assert!(cache.stats().hits > hits, "{sql}: {:?}", cache.stats());
        }
    }
    // A kept scan meters the bytes the Parquet scan would have read.
    let plan = planned(&ctx, QUERIES[2]).await;
    let plan = keep(plan, &cache);
    let (hits, misses) = (cache.stats().hits, cache.stats().misses);
    collect(plan.clone(), ctx.task_ctx()).await.unwrap();
    assert!(cache.stats().hits > hits && cache.stats().misses == misses);
    assert!(
        crate::results::bytes_scanned(&plan) > 10_000,
        "{}",
        displayable(plan.as_ref()).indent(true)
    );
    let stats = cache.stats();
    assert!(stats.bytes > 0 && stats.columns >= 5, "{stats:?}");
    // `v` is not in the second file: refused there, so its partitions read the files.
    assert_eq!(stats.refusals, 1, "{stats:?}");
    assert!(stats.misses > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_stopped_early_keeps_nothing() {
    let (_dir, ctx) = table().await;
    let cache = Arc::new(ColumnCache::new(64 << 20));
    // A limit the scan itself applies, and one above a scan the limit stops early.
    for sql in [
        "SELECT id, name FROM t LIMIT 3",
        "SELECT id FROM t WHERE name LIKE 'customer%' LIMIT 2",
    ] {
        for _ in 0..2 {
            assert!(answer(&ctx, sql, Some(&cache)).await.lines().count() >= 5);
            settled(&cache).await;
        }
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.fills, stats.columns, stats.hits),
        (0, 0, 0),
        "{stats:?}"
    );
    // Read through, the same columns are kept.
    answer(&ctx, "SELECT id, name FROM t", Some(&cache)).await;
    settled(&cache).await;
    assert_eq!(cache.stats().fills, 4, "{:?}", cache.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_of_nothing_leaves_the_plan_and_a_full_one_shows_in_it() {
    let (_dir, ctx) = table().await;
    let plan = planned(&ctx, QUERIES[1]).await;
    let none = keep(plan.clone(), &Arc::new(ColumnCache::new(0)));
    assert!(Arc::ptr_eq(&none, &plan));
    let kept = keep(plan, &Arc::new(ColumnCache::new(1 << 20)));
    let shown = displayable(kept.as_ref()).indent(true).to_string();
    assert!(shown.contains("KeptColumnsExec: columns=2"), "{shown}");
    assert!(shown.contains("DataSourceExec"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_over_a_quarter_of_the_cache_are_refused_and_read_from_the_files() {
    let (_dir, ctx) = table().await;
    let sql = "SELECT name, count(*) FROM t GROUP BY name";
    let expected = answer(&ctx, sql, None).await;
    // 10,000 views of `name` take 160 KB: a cache of 64 KiB does not even try.
    let cache = Arc::new(ColumnCache::new(64 << 10));
    let plan = planned(&ctx, sql).await;
    let kept = keep(plan, &cache);
    assert!(
        !displayable(kept.as_ref())
            .indent(true)
            .to_string()
            .contains("KeptColumnsExec")
    );
    // 5000 of them take 80 KB a file, over a quarter of 256 KiB: refused before decoding.
    // With their strings (20 bytes each, longer than a view holds) they take over 128 KiB:
    // refused while decoding, in a cache of 512 KiB.
    for limit in [256 << 10, 512 << 10] {
        let cache = Arc::new(ColumnCache::new(limit));
        for _ in 0..3 {
            assert_eq!(answer(&ctx, sql, Some(&cache)).await, expected);
            settled(&cache).await;
        }
        let stats = cache.stats();
        assert_eq!(
            (stats.hits, stats.fills, stats.refusals),
            (0, 0, 2),
            "{stats:?}"
        );
    }
    // In a cache of 1 MiB they are kept.
    let cache = Arc::new(ColumnCache::new(1 << 20));
    for _ in 0..2 {
        assert_eq!(answer(&ctx, sql, Some(&cache)).await, expected);
        settled(&cache).await;
    }
    let stats = cache.stats();
    assert_eq!((stats.fills, stats.refusals), (2, 0), "{stats:?}");
    assert!(stats.hits > 0 && stats.bytes > 2 * (128 << 10), "{stats:?}");
}

/// A cache of 64 MiB that also keeps its columns in `dir`, up to `disk` bytes.
fn on_disk(dir: &std::path::Path, disk: u64) -> Arc<ColumnCache> {
    Arc::new(ColumnCache::new(64 << 20).with_disk(super::disk::Disk::open(dir, disk)))
}

/// The kept columns' files in `dir`, and their bytes.
fn kept_files(dir: &std::path::Path) -> (Vec<std::path::PathBuf>, u64) {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "arrow"))
        .collect();
    let bytes = files.iter().map(|p| p.metadata().unwrap().len()).sum();
    (files, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_kept_on_disk_answer_the_next_process() {
    let (_dir, ctx) = table().await;
    let columns = tempfile::tempdir().unwrap();
    let first = on_disk(columns.path(), 64 << 20);
    let mut expected = Vec::new();
    for sql in QUERIES {
        expected.push(answer(&ctx, sql, None).await);
        answer(&ctx, sql, Some(&first)).await;
        settled(&first).await;
    }
    let stats = first.stats();
    assert!(stats.disk_stores >= 5 && stats.disk_loads == 0, "{stats:?}");
    let (files, bytes) = kept_files(columns.path());
    assert_eq!(files.len() as u64, stats.disk_stores);
    assert!(
        bytes > 10_000 && stats.disk_bytes == bytes,
        "{bytes}, {stats:?}"
    );

    // A new cache over the same folder (the next process) reads them, decoding nothing.
    let next = on_disk(columns.path(), 64 << 20);
    for (sql, expected) in QUERIES.iter().zip(&expected) {
        assert_eq!(&answer(&ctx, sql, Some(&next)).await, expected, "{sql}");
        settled(&next).await;
    }
    let stats = next.stats();
    assert!(stats.disk_loads >= 5 && stats.hits > 0, "{stats:?}");
    // Only `v` of the second file, which it lacks, is tried again (and refused).
    assert_eq!((stats.fills, stats.refusals), (0, 1), "{stats:?}");

    // A file that does not read back is removed, and the scan reads the data files.
    for file in &files {
        let mut bytes = std::fs::read(file).unwrap();
        let middle = bytes.len() / 2;
        bytes.truncate(middle);
        std::fs::write(file, bytes).unwrap();
    }
    // (A fill leaves a column it finds on disk, so one scan may find a broken file that
    // an earlier scan did not try, and the next decode it: twice over the queries.)
    let broken = on_disk(columns.path(), 64 << 20);
    for (sql, expected) in QUERIES.iter().chain(&QUERIES).zip(expected.iter().cycle()) {
        assert_eq!(&answer(&ctx, sql, Some(&broken)).await, expected, "{sql}");
        settled(&broken).await;
    }
    let stats = broken.stats();
    assert_eq!(stats.disk_loads, 0, "{stats:?}");
    assert!(
        stats.fills >= 5 && stats.disk_stores == stats.fills,
        "{stats:?}"
    );
    let (again, _) = kept_files(columns.path());
    assert_eq!(again.len(), files.len());
    assert!(again.iter().all(|f| f.metadata().unwrap().len() > 100));
}
