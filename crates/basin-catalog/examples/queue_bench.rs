//! The event queue's throughput: no-op invocations through a catalog store, each one claimed
//! (leased) and settled as a worker does, with no function process in between: what the
//! queue itself costs per invocation. `NODES` stores (separate pools: separate nodes) with
//! `TASKS` claimers each take batches of `BATCH` events of one function and settle each
//! batch's events in one transaction (`finish_events`), as the dispatcher does. Run by `bench/event_queue.py`; prints one JSON object.
//!
//!     cargo run --release -p basin-catalog --example queue_bench -- LOCATION [EVENTS] [BATCH] [NODES] [TASKS]
//!
//! LOCATION is a `postgres://` URL (a database of its own: the bench fills it) or a SQLite
//! file path.

use std::sync::Arc;
use std::time::Instant;

use basin_catalog::{EventOutcome, NewEvent, Settled, Store, open_store};

#[tokio::main]
async fn main() -> basin_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let location = args
        .next()
        .expect("usage: queue_bench LOCATION [EVENTS] [BATCH] [NODES] [TASKS]");
    let numbers: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    let number = |i: usize, default: usize| numbers.get(i).copied().unwrap_or(default);
    let (events, batch, nodes, tasks) =
        (number(0, 20_000), number(1, 10), number(2, 2), number(3, 4));

    let store = open_store(&location).await?;
    store.initialize().await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let new: Vec<NewEvent> = (0..events)
        .map(|i| NewEvent {
            id: format!("{run}-{i:07}"),
            function: format!("noop-{run}"),
            payload: serde_json::json!({"i": i}),
            max_attempts: 1,
        })
        .collect();
    let started = Instant::now();
    for chunk in new.chunks(1000) {
        store.enqueue_events(chunk).await?;
    }
    let enqueue_seconds = started.elapsed().as_secs_f64();

    let function = format!("noop-{run}");
    let started = Instant::now();
    let mut claimers = tokio::task::JoinSet::new();
    for n in 0..nodes {
        let node: Arc<dyn Store> = open_store(&location).await?;
        for t in 0..tasks {
            let (node, function) = (node.clone(), function.clone());
            let name = format!("node{n}-task{t}");
            claimers.spawn(async move {
                let mut settled = 0usize;
                loop {
                    let now = chrono::Utc::now().timestamp_millis();
                    let claimed = node
                        .claim_events(&function, batch, now, now + 60_000, &name)
                        .await?;
                    if claimed.is_empty() {
                        return Ok::<usize, basin_core::Error>(settled);
                    }
                    let outcomes: Vec<Settled> = claimed
                        .into_iter()
                        .map(|event| Settled {
                            id: event.id,
                            attempt: event.attempts,
                            outcome: EventOutcome::Succeeded {
                                logs: String::new(),
                                result: None,
                            },
                        })
                        .collect();
                    node.finish_events(&outcomes).await?;
                    settled += outcomes.len();
                }
            });
        }
    }
    let mut settled = 0;
    while let Some(result) = claimers.join_next().await {
        settled += result.expect("claimer task")?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let counts = store.event_counts(Some(&function)).await?;
    assert_eq!(
        (settled, counts.succeeded as usize),
        (events, events),
        "every event settled exactly once"
    );
    println!(
        r#"{{"events": {events}, "batch": {batch}, "nodes": {nodes}, "tasks_per_node": {tasks}, "enqueue_per_second": {:.0}, "invocations_per_second": {:.0}, "seconds": {seconds:.3}}}"#,
        events as f64 / enqueue_seconds,
        events as f64 / seconds,
    );
    Ok(())
}
