//! Catalog latency with many tables: branch creation and single-table commits on a SQLite
//! catalog file. Run by `bench/run.py`; prints one JSON object.
//!
//!     cargo run --release -p basin-catalog --example catalog_latency -- [TABLES] [SAMPLES]

use std::sync::Arc;
use std::time::Instant;

use basin_catalog::{Catalog, CommitRequest, Content, Key, Operation, SqlStore, Store};

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
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (tables, samples) = (
        args.first().copied().unwrap_or(1000),
        args.get(1).copied().unwrap_or(200),
    );
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = SqlStore::open(&dir.path().join("catalog.db")).await?;
    store.initialize().await?;
    let catalog = Catalog::new(Arc::new(store));

    let key = |i: usize| Key::parse(&format!("bench.t{i}")).expect("valid key");
    let mut ops = vec![Operation::Put {
        key: Key::parse("bench")?,
        content: Content::namespace(),
    }];
    ops.extend((0..tables).map(|i| Operation::Put {
        key: key(i),
        content: Content::table(format!("m{i}-0")),
    }));
    let head = catalog.resolve("main").await?.commit;
    catalog
        .commit(CommitRequest::new("main", head, "load").with_operations(ops))
        .await?;

    let mut create = Vec::with_capacity(samples);
    for i in 0..samples {
        let main = catalog.resolve("main").await?;
        let started = Instant::now();
        catalog.create_branch(&format!("b{i}"), &main).await?;
        create.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let mut commit = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        let head = catalog.resolve("main").await?.commit;
        let op = Operation::Put {
            key: key(i % tables),
            content: Content::table(format!("m{i}-1")),
        };
        catalog
            .commit(CommitRequest::new("main", head, "one table").with_operations([op]))
            .await?;
        commit.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        r#"{{"tables": {tables}, "samples": {samples}, "branch_create": {}, "commit": {}}}"#,
        summary(create),
        summary(commit)
    );
    Ok(())
}
