//! TPC-H on the local engine and on Ballista (a scheduler and N executors in this process, on
//! loopback), one query after the other, best of ROUNDS each; prints a Markdown table with the
//! machine and the date, and checks both engines give the same answers.
//!
//!     cargo build --release --workspace --example sql_engines
//!     $CARGO_TARGET_DIR/release/examples/sql_engines [--scale 1] [--rounds 3] [--executors 2] [--dir DIR]
//!
//! DIR keeps the lakehouse between runs (made and loaded when it is new).

use std::path::PathBuf;
use std::time::Instant;

use arrow::util::display::array_value_to_string;
use basin_service::{Lakehouse, tpch};
use basin_sql::distributed;

/// The `basin` binary's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    scale: f64,
    rounds: usize,
    executors: usize,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        scale: 1.0,
        rounds: 3,
        executors: 2,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--scale" => args.scale = value.parse().expect("--scale"),
            "--rounds" => args.rounds = value.parse().expect("--rounds"),
            "--executors" => args.executors = value.parse().expect("--executors"),
            "--dir" => args.dir = Some(value.into()),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// A lakehouse in `dir` holding TPC-H at `scale`, sending every query it can to Ballista.
async fn lakehouse(dir: &std::path::Path, scale: f64) -> Lakehouse {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("basin.toml"), "[sql]\nengine = \"ballista\"\n").unwrap();
    if dir.join(".basin").exists() {
        return Lakehouse::open(Some(dir), dir).await.unwrap();
    }
    let lakehouse = Lakehouse::init(dir, &basin_service::Placement::default())
        .await
        .unwrap();
    eprintln!("loading TPC-H at scale {scale}");
    tpch::load(&lakehouse, scale, "main").await.unwrap();
    lakehouse
}

/// The query's answer as text rows (numbers rounded, so two engines' float sums compare).
fn rows(result: &basin_sql::QueryResult) -> Vec<String> {
    let mut out = Vec::new();
    for batch in &result.batches {
        for r in 0..batch.num_rows() {
            let cells: Vec<String> = (0..batch.num_columns())
                .map(|c| {
                    let text = array_value_to_string(batch.column(c), r).unwrap();
                    match text.parse::<f64>() {
                        Ok(v) if text.contains('.') => format!("{v:.2}"),
                        _ => text,
                    }
                })
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

async fn best(lakehouse: &Lakehouse, sql: &str, rounds: usize) -> (f64, Vec<String>) {
    let mut best = f64::MAX;
    let mut answer = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let result = lakehouse
            .query(sql, Some("main"), Some("tpch"))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        best = best.min(started.elapsed().as_secs_f64());
        answer = rows(&result);
    }
    (best, answer)
}

#[tokio::main]
async fn main() {
    let args = args();
    let temp = tempfile::tempdir().unwrap();
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().join("tpch"));
    let lakehouse = lakehouse(&dir, args.scale).await;
    let engine = lakehouse.sql();
    let token = lakehouse.cluster_token().await.unwrap();
    let scheduler =
        distributed::start_scheduler("127.0.0.1:0", engine, lakehouse.iceberg_tables(), &token)
            .await
            .unwrap();
    let work = tempfile::tempdir().unwrap();
    let slots = std::thread::available_parallelism().map_or(2, usize::from);
    let mut executors = Vec::new();
    for n in 0..args.executors {
        executors.push(
            distributed::start_executor(
                &scheduler.addr().to_string(),
                "127.0.0.1:0",
                None,
                slots,
                &work.path().join(n.to_string()),
                engine,
                &token,
            )
            .await
            .unwrap(),
        );
    }
    while scheduler.alive_executors().await < args.executors {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let queries = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/tpch/queries");
    let machine = std::process::Command::new("uname")
        .arg("-srm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "Machine: {} cores, {machine}  \nDate: {} UTC  \nScale factor: {}; {} executors of {slots} slots in this process; best of {}\n",
        slots,
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        args.scale,
        args.executors,
        args.rounds
    );
    println!("| query | local [s] | Ballista [s] | Ballista / local | same answer |");
    println!("| --- | ---: | ---: | ---: | --- |");
    let (mut local_total, mut ballista_total) = (0.0, 0.0);
    for query in 1..=22 {
        let sql = std::fs::read_to_string(queries.join(format!("q{query:02}.sql"))).unwrap();
        engine.use_scheduler(&scheduler, &token);
        let (ballista, distributed_answer) = best(&lakehouse, &sql, args.rounds).await;
        engine.leave_cluster();
        let (local, local_answer) = best(&lakehouse, &sql, args.rounds).await;
        local_total += local;
        ballista_total += ballista;
        println!(
            "| q{query:02} | {local:.3} | {ballista:.3} | {:.2}x | {} |",
            ballista / local,
            if local_answer == distributed_answer {
                "yes"
            } else {
                "NO"
            }
        );
    }
    println!(
        "| total | {local_total:.3} | {ballista_total:.3} | {:.2}x | |",
        ballista_total / local_total
    );
    let tasks: Vec<u64> = executors.iter().map(|e| e.tasks_run()).collect();
    println!("\nTasks run per executor: {tasks:?}");
}
