//! Object-created events from the embedded default's buckets: the folders under
//! `.basin/buckets/`, watched with inotify (through `notify`), plus a scan at start-up for
//! files that arrived while Basin was down. An event's id is a hash of the function, the key,
//! the size and the modification time, so a file seen by both the scan and the watcher, or
//! scanned at every start, is queued once.

use std::path::{Path, PathBuf};

use basin_catalog::{Error, NewEvent, Result};
use basin_runtime::Trigger;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::deploy::DeployedFunction;
use super::dispatch::Dispatcher;
use crate::Lakehouse;

/// Watches the buckets while it lives.
pub type BucketWatcher = notify::RecommendedWatcher;

/// The folder holding every bucket of the embedded default.
pub fn buckets_dir(lakehouse: &Lakehouse) -> PathBuf {
    lakehouse.root().join(crate::BASIN_DIR).join("buckets")
}

/// Queues an event for every file in the buckets that a deployed function wants and that
/// is not queued yet. Returns how many were new.
pub async fn scan(lakehouse: &Lakehouse) -> Result<usize> {
    let functions = lakehouse.deployed_functions().await?;
    let root = buckets_dir(lakehouse);
    let mut events = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => events.extend(object_events(&functions, &root, &path)),
                _ => {}
            }
        }
    }
    let store = lakehouse.catalog().store();
    let mut stored = 0;
    for chunk in events.chunks(1000) {
        stored += store.enqueue_events(chunk).await?;
    }
    Ok(stored)
}

/// Watches the buckets until the returned watcher is dropped, queueing an event for each
/// file written (closed after writing) or moved in, and waking the dispatcher.
pub fn watch(lakehouse: Lakehouse, dispatcher: Dispatcher) -> Result<BucketWatcher> {
    let root = buckets_dir(&lakehouse);
    std::fs::create_dir_all(&root)
        .map_err(|e| Error::io(format!("cannot create {}: {e}", root.display())))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let written = matches!(
            event.kind,
            EventKind::Access(notify::event::AccessKind::Close(
                notify::event::AccessMode::Write
            )) | EventKind::Modify(notify::event::ModifyKind::Name(
                notify::event::RenameMode::To | notify::event::RenameMode::Both
            ))
        );
        if written {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .map_err(|e| Error::io(format!("cannot watch {}: {e}", root.display())))?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|e| Error::io(format!("cannot watch {}: {e}", root.display())))?;
    tokio::spawn(async move {
        let mut paths = Vec::new();
        while rx.recv_many(&mut paths, 1000).await > 0 {
            if let Err(e) = queue(&lakehouse, &root, &paths).await {
                tracing::error!("cannot queue events for new objects: {e}");
            }
            paths.clear();
            dispatcher.wake();
        }
    });
    Ok(watcher)
}

async fn queue(lakehouse: &Lakehouse, root: &Path, paths: &[PathBuf]) -> Result<()> {
    let functions = lakehouse.deployed_functions().await?;
    let events: Vec<NewEvent> = paths
        .iter()
        .filter(|p| p.is_file())
        .flat_map(|p| object_events(&functions, root, p))
        .collect();
    lakehouse.catalog().store().enqueue_events(&events).await?;
    Ok(())
}

/// The events one file makes: one per function whose bucket, prefix and suffix match.
fn object_events(functions: &[DeployedFunction], root: &Path, path: &Path) -> Vec<NewEvent> {
    let Ok(relative) = path.strip_prefix(root) else {
        return Vec::new();
    };
    let mut parts = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy());
    let Some(bucket) = parts.next() else {
        return Vec::new();
    };
    let key = parts.collect::<Vec<_>>().join("/");
    // Hidden files are uploads in progress (`basin put` writes `.NAME.part`, then renames).
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if key.is_empty() || name.starts_with('.') {
        return Vec::new();
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    let etag = format!("{:x}-{:x}", modified.as_nanos(), meta.len());
    functions
        .iter()
        .filter(|f| match f.trigger() {
            Some(Trigger::Object {
                bucket: b,
                prefix,
                suffix,
            }) => {
                b == &*bucket && key.starts_with(prefix.as_str()) && key.ends_with(suffix.as_str())
            }
            _ => false,
        })
        .map(|f| NewEvent {
            id: super::event_id(&[&f.name, &bucket, &key, &etag]),
            function: f.name.clone(),
            payload: serde_json::json!({
                "type": "object_created",
                "bucket": bucket,
                "key": key,
                "size": meta.len(),
                "etag": etag,
                "time": chrono::DateTime::<chrono::Utc>::from(
                    std::time::UNIX_EPOCH + modified
                ).to_rfc3339(),
                "source": "local",
            }),
            max_attempts: f.declaration.max_attempts,
        })
        .collect()
}
