//! Latency of a one-row append commit on a local warehouse with a SQLite catalog file: the
//! data file written, then `Tables::commit_change` (stage the snapshot, make its files
//! durable, move the branch). Prints one JSON object.
//!
//!     cargo run --release -p basin-table --example commit_latency -- [SAMPLES] [DIR]
//!
//! DIR (default: a temporary folder under the current one) must be on the disk being
//! measured: /dev/shm or another tmpfs makes every fsync free.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Int64Array, RecordBatch};
use basin_catalog::{Catalog, CommitRequest, Content, Key, Operation, SqlStore, Store};
use basin_table::iceberg::spec::{NestedField, PrimitiveType, Schema, Type, UnboundPartitionSpec};
use basin_table::{TableChange, TableWriter, Tables, Warehouse};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(|a, b| a.total_cmp(b));
    format!(
        r#"{{"p50_ms": {:.3}, "p95_ms": {:.3}}}"#,
        percentile(&ms, 0.5),
        percentile(&ms, 0.95)
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> basin_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let samples: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let dir =
        tempfile::tempdir_in(args.next().unwrap_or_else(|| ".".into())).expect("temporary folder");
    let store = SqlStore::open(&dir.path().join("catalog.db")).await?;
    store.initialize().await?;
    let catalog = Catalog::new(Arc::new(store));
    let tables = Tables::new(
        catalog.clone(),
        Warehouse::local(&dir.path().join("warehouse"))?,
    );

    let key = Key::table("bench.t")?;
    let schema = Schema::builder()
        .with_fields(vec![
            NestedField::optional(1, "n", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .expect("schema");
    let head = catalog.resolve("main").await?.commit;
    catalog
        .commit(
            CommitRequest::new("main", head, "namespace").with_operations([Operation::Put {
                key: Key::parse("bench")?,
                content: Content::namespace(),
            }]),
        )
        .await?;

    let mut write = Vec::with_capacity(samples);
    let mut commit = Vec::with_capacity(samples);
    for i in 0..samples + 5 {
        let main = catalog.resolve("main").await?;
        let staged = match catalog.content(&main, &key).await? {
            Some(_) => Tables::stage_existing(tables.load(&main, &key).await?),
            None => {
                tables
                    .stage_create(
                        &key,
                        schema.clone(),
                        UnboundPartitionSpec::default(),
                        Default::default(),
                    )
                    .await?
            }
        };
        let started = Instant::now();
        let mut writer = TableWriter::new(&staged.table).await?;
        let batch =
            RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(vec![i as i64])) as _)])
                .expect("batch");
        writer.write(batch).await?;
        let files = writer.close().await?;
        let written = Instant::now();
        tables
            .commit_change(
                &key,
                staged,
                TableChange::Append(files),
                CommitRequest::new("main", main.commit, "bench append"),
            )
            .await?;
        // The first few warm the page cache and the catalog.
        if i >= 5 {
            write.push((written - started).as_secs_f64() * 1e3);
            commit.push(written.elapsed().as_secs_f64() * 1e3);
        }
    }
    println!(
        r#"{{"samples": {samples}, "write_data_file": {}, "commit": {}}}"#,
        summary(write),
        summary(commit)
    );
    Ok(())
}
