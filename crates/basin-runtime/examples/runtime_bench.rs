//! Function runtime figures, run by `bench/run.py`; prints one JSON object:
//! environment resolve on a cache hit, invoke -> first line of user code on a new worker and
//! on a warm one, the whole round trip of back-to-back no-op invocations in a fresh child
//! (`reuse` off) and in a kept one (`reuse` on, the default), and the handoff of a table
//! Basin -> Python -> Basin through shared memory (returned unchanged, so handed back by
//! reference: docs/protocol.md, "Tables by reference").
//!
//!     cargo run --release -p basin-runtime --example runtime_bench -- \
//!         [SAMPLES] [HANDOFF_MB] [POOL_MB] [HANDOFFS] [GAP_MS] [MEMORY_WALL]
//!
//! MEMORY_WALL 0 turns the `memory` wall (a cgroup per invocation) off, for its A/B.
//!
//! POOL_MB is `[functions] handoff_pool` (default 4096: twice the table, which both the input
//! and the output need; 0 measures without the pool). HANDOFFS (default 3) handoffs run
//! GAP_MS apart (default 1000); the report has the best and, of those after the first (which
//! finds the pool empty), the slowest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use basin_runtime::{
    EnvCache, EnvSpec, Invocation, Limits, Output, Runtime, RuntimeOptions, Target,
};

/// The `basin` binary's allocator, so the handoff is measured as Basin runs it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn percentiles(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    serde_json::json!({"p50_ms": at(0.5), "p95_ms": at(0.95), "samples": ms.len()})
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
}

const SOURCE: &str = "
import time
def first():
    return time.time_ns()

def noop():
    return None

def echo(table):
    return table
";

struct Bench {
    /// `reuse` off: a fresh child per invocation.
    rt: Runtime,
    /// pyarrow and pandas, preloaded by the worker: the environment of a data function.
    spec: EnvSpec,
    /// No packages: a worker of Python alone.
    bare: EnvSpec,
}

impl Bench {
    async fn invoke(&self, name: &str, ws: basin_runtime::Workspace) -> (Output, f64) {
        self.invoke_in(&self.spec, name, ws).await
    }

    async fn invoke_in(
        &self,
        spec: &EnvSpec,
        name: &str,
        ws: basin_runtime::Workspace,
    ) -> (Output, f64) {
        invoke_on(&self.rt, spec, name, ws).await
    }
}

async fn invoke_on(
    rt: &Runtime,
    spec: &EnvSpec,
    name: &str,
    ws: basin_runtime::Workspace,
) -> (Output, f64) {
    let env = rt.environment(spec).await.expect("environment");
    let invocation = Invocation {
        function: format!("bench.py:{name}"),
        target: Target::Python {
            file: PathBuf::from("/bench/bench.py"),
            name: name.into(),
            source: SOURCE.into(),
        },
        env,
        preload: spec.packages.keys().cloned().collect(),
        event: serde_json::Value::Null,
        params: serde_json::Value::Null,
        secrets: BTreeMap::new(),
        limits: Limits {
            memory_bytes: Some(16 << 30),
            ..Limits::default()
        },
        concurrency: None,
    };
    let started = Instant::now();
    let finished = rt.invoke(ws, invocation, Arc::new(|_, _| {})).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    (finished.result.expect("the bench function runs"), ms)
}

/// Back-to-back no-op round trips on `rt` in `spec`'s environment, after one that starts
/// the worker (and, with `reuse`, the child the others run in).
async fn round_trips(rt: &Runtime, spec: &EnvSpec, samples: usize) -> Vec<f64> {
    invoke_on(rt, spec, "noop", rt.workspace().expect("workspace")).await;
    let mut ms = Vec::new();
    for _ in 0..samples {
        let ws = rt.workspace().expect("workspace");
        ms.push(invoke_on(rt, spec, "noop", ws).await.1);
    }
    ms
}

impl Bench {
    /// Milliseconds from the call to the function's first line.
    async fn first_line(&self) -> f64 {
        let before = now_ns();
        let ws = self.rt.workspace().expect("workspace");
        match self.invoke("first", ws).await.0 {
            Output::Json(v) => (v.as_i64().expect("ns") - before) as f64 / 1e6,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let samples = args.first().copied().unwrap_or(50);
    let handoff_mb = args.get(1).copied().unwrap_or(1024);
    let pool_mb = args.get(2).copied().unwrap_or(4096);
    let handoffs = args.get(3).copied().unwrap_or(3).max(2);
    let gap = std::time::Duration::from_millis(args.get(4).copied().unwrap_or(1000) as u64);
    let disable_walls = match args.get(5) {
        Some(0) => vec!["memory".to_string()],
        _ => Vec::new(),
    };
    let cache = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/basin/bench-envs");
    let envs = EnvCache::new(cache.join("envs"), cache.join("tools"));
    let spec = EnvSpec::new("3.11")
        .with_package("pyarrow", "26.0.1")
        .with_package("pandas", "2.2.3");
    envs.resolve(&spec).await.expect("environment builds");
    let bare = EnvSpec::new("3.11");
    envs.resolve(&bare).await.expect("environment builds");

    let mut hit = Vec::new();
    for _ in 0..samples * 4 {
        let started = Instant::now();
        let env = envs.resolve(&spec).await.expect("cached");
        assert!(!env.built);
        hit.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    let options = RuntimeOptions {
        handoff_pool: (pool_mb as u64) << 20,
        disable_walls,
        isolation: Some(basin_runtime::Isolation::BestEffort),
        ..RuntimeOptions::default()
    };
    let kept_rt = Runtime::new(envs.clone(), options.clone()).expect("runtime");
    let bench = Bench {
        rt: Runtime::new(
            envs,
            RuntimeOptions {
                reuse: false,
                ..options
            },
        )
        .expect("runtime"),
        spec,
        bare,
    };
    let mut new_worker = Vec::new();
    for _ in 0..samples.clamp(3, 10) {
        bench.rt.kill_all().await;
        new_worker.push(bench.first_line().await);
    }
    // Invocations arriving 50 ms apart, so the worker has its next child forked ahead.
    let mut warm = Vec::new();
    for _ in 0..samples {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        warm.push(bench.first_line().await);
    }
    let round_trip = round_trips(&bench.rt, &bench.spec, samples).await;
    let bare = round_trips(&bench.rt, &bench.bare, samples).await;
    // Kept children (`reuse`, the default): many more samples, they are short.
    let kept = round_trips(&kept_rt, &bench.spec, samples * 10).await;
    let kept_bare = round_trips(&kept_rt, &bench.bare, samples * 10).await;
    kept_rt.kill_all().await;

    // The handoff: eight Int64 columns, `handoff_mb` MiB in all.
    let schema = Arc::new(Schema::new(
        (0..8)
            .map(|i| Field::new(format!("c{i}"), DataType::Int64, false))
            .collect::<Vec<_>>(),
    ));
    let rows = handoff_mb * (1 << 20) / 64;
    let batch_rows = 1 << 20;
    let batches: Vec<RecordBatch> = (0..rows.div_ceil(batch_rows))
        .map(|b| {
            let n = batch_rows.min(rows - b * batch_rows);
            let columns: Vec<ArrayRef> = (0..8)
                .map(|c| {
                    Arc::new(Int64Array::from_iter_values(
                        (0..n as i64).map(|v| v * 8 + c),
                    )) as ArrayRef
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).expect("batch")
        })
        .collect();
    let bytes = (rows * 64) as f64;
    let mut handoff = Vec::new();
    for _ in 0..handoffs {
        // The pool makes its files in the background after an invocation; a pipeline's
        // next model finds them ready, as the next run does after this pause.
        tokio::time::sleep(gap).await;
        let started = Instant::now();
        let mut ws = bench.rt.workspace().expect("workspace");
        ws.tables_by_reference();
        let stream = futures::stream::iter(batches.clone().into_iter().map(Ok));
        ws.write_input("table", schema.clone(), stream)
            .await
            .expect("input");
        let written = started.elapsed().as_secs_f64();
        let (output, _) = bench.invoke("echo", ws).await;
        let total = started.elapsed().as_secs_f64();
        let Output::Table { batches: back, .. } = output else {
            panic!("a table")
        };
        let back_rows: usize = back.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(back_rows, rows);
        let counters = &bench.rt.options().counters;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        handoff.push(serde_json::json!({
            "seconds": total,
            "write_input_seconds": written,
            "gb_per_second": bytes / 1e9 / total,
            "pool_hits": load(&counters.handoff_pool_hits),
            "pool_misses": load(&counters.handoff_pool_misses),
        }));
    }
    let rate = |run: &serde_json::Value| run["gb_per_second"].as_f64().expect("rate");
    let best = handoff
        .iter()
        .max_by(|a, b| rate(a).total_cmp(&rate(b)))
        .cloned()
        .expect("runs");
    let slowest_warm = handoff[1..]
        .iter()
        .min_by(|a, b| rate(a).total_cmp(&rate(b)))
        .cloned()
        .expect("runs");
    let report = serde_json::json!({
        "env_resolve_cache_hit": percentiles(hit),
        "first_line_new_worker": percentiles(new_worker),
        "first_line_warm_worker": percentiles(warm),
        "round_trip_warm": percentiles(round_trip),
        "round_trip_warm_bare": percentiles(bare),
        "round_trip_kept": percentiles(kept),
        "round_trip_kept_bare": percentiles(kept_bare),
        "handoff": {"megabytes": handoff_mb, "pool_megabytes": pool_mb, "best": best, "slowest_warm": slowest_warm, "runs": handoff},
    });
    println!("{report}");
}
