//! Commit triggers: `@basin.on_commit(table, branch=...)`. The watcher looks at each watched
//! table's snapshot on its branch head; when it moved, it queues one event standing for the
//! commits between the last snapshot queued and this one. It sees every writer alike
//! (imports, merges, change capture, Iceberg REST commits of other engines, other
//! functions), since it reads the catalog, not the writers.
//!
//! Each change reaches the function once. An event's id is the function and the snapshot
//! it starts from, so a range is queued once even if two watchers (two nodes) or a restart
//! queue it again; the cursor (the catalog's per-name cursor, `commit:FUNCTION`) then moves to
//! the end of the event stored under that id, whoever stored it, so the next event starts
//! exactly there. The event is consumed in the same catalog commit as the function's output
//! (`dispatch/settle.rs`), as every event with `to=` is. A first look starts at the current
//! snapshot: what was committed before the function was deployed does not fire it.

use std::time::Duration;

use basin_catalog::{Key, NewEvent};
use basin_core::Result;
use basin_runtime::Trigger;
use tokio::sync::watch;

use crate::Lakehouse;
use crate::deployed::DeployedFunction;
use crate::dispatch::Dispatcher;

/// How often the watcher looks at the watched tables' branch heads.
pub const POLL: Duration = Duration::from_millis(500);

/// The cursor's value before the table has a snapshot (`table_changes` reads it so).
const NO_SNAPSHOT: i64 = basin_sql::BEFORE_THE_TABLE;

/// Queues commit events until `stop` turns true.
pub async fn run(lakehouse: Lakehouse, dispatcher: Dispatcher, stop: watch::Receiver<bool>) {
    super::repeat("the commit watcher", stop, || async {
        tick(&lakehouse, &dispatcher).await.map(|()| POLL)
    })
    .await
}

/// One look at every watched table; queues an event for each that moved.
pub async fn tick(lakehouse: &Lakehouse, dispatcher: &Dispatcher) -> Result<()> {
    let mut queued = false;
    for function in lakehouse.deployed().list().await? {
        let Some(Trigger::Commit { table, branch }) = function.trigger() else {
            continue;
        };
        match watch_one(lakehouse, &function, table, branch).await {
            Ok(q) => queued |= q,
            Err(e) => tracing::warn!(function = function.name, "commit trigger: {e}"),
        }
    }
    if queued {
        dispatcher.wake();
    }
    Ok(())
}

/// Queues the event for `function` if its table moved; returns whether it did.
async fn watch_one(
    lakehouse: &Lakehouse,
    function: &DeployedFunction,
    table: &str,
    branch: &str,
) -> Result<bool> {
    let store = lakehouse.catalog().store();
    let key = Key::table(table)?;
    // The catalog as the deployer sees it: a table it may not read never fires it.
    let (head, snapshot) = basin_catalog::actor::scope(function.actor(), async {
        let head = lakehouse.catalog().resolve(branch).await?;
        let table = lakehouse
            .iceberg_tables()
            .load_if_present(&head, &key)
            .await?;
        let snapshot = table.and_then(|t| t.metadata().current_snapshot_id());
        Ok::<_, basin_core::Error>((head, snapshot.unwrap_or(NO_SNAPSHOT)))
    })
    .await?;
    let cursor = format!("commit:{}", function.name);
    let Some(last) = store.cursor(&cursor).await? else {
        store.set_cursor(&cursor, snapshot).await?;
        return Ok(false);
    };
    if last == snapshot {
        return Ok(false);
    }
    let id = crate::queue::event_id(&[&function.name, "commit", &last.to_string()]);
    let event = NewEvent {
        id: id.clone(),
        function: function.name.clone(),
        payload: serde_json::json!({
            "type": "commit",
            "table": table,
            "branch": branch,
            // Snapshot ids pass 2^53: strings, as everywhere in Basin's JSON.
            "from_snapshot": (last != NO_SNAPSHOT).then(|| last.to_string()),
            "to_snapshot": (snapshot != NO_SNAPSHOT).then(|| snapshot.to_string()),
            "commit": head.commit.to_string(),
            "source": "commit",
        }),
        max_attempts: function.declaration.max_attempts,
    };
    store.enqueue_events(&[event]).await?;
    // Whoever stored the event under this id first decided where it ends.
    let stored = lakehouse.queue().event(&id).await?;
    let end = stored.payload["to_snapshot"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(NO_SNAPSHOT);
    store.set_cursor(&cursor, end).await?;
    Ok(true)
}
