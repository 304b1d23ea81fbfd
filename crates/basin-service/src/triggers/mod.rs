//! Triggered functions: declared with `@basin.on_object`, `schedule` or `http`, deployed
//! with `basin deploy`, fed by a durable queue in the catalog store, and dispatched by
//! `basin serve`.

pub mod deploy;
pub mod dispatch;
pub mod http;
pub mod schedule;
pub mod watch;

use std::path::Path;

use basin_catalog::{Error, EventCounts, EventFilter, EventRecord, Result};
use sha2::{Digest, Sha256};

use crate::Lakehouse;

/// An event id made from what identifies the event at its source (the function first), so
/// that seeing the same thing twice queues it once: 20 hex digits of a SHA-256.
pub(crate) fn event_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Lakehouse {
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        self.catalog().store().events(filter).await
    }

    pub async fn event_counts(&self, function: Option<&str>) -> Result<EventCounts> {
        self.catalog().store().event_counts(function).await
    }

    /// The event whose id is or starts with `id`.
    pub async fn event(&self, id: &str) -> Result<EventRecord> {
        let mut found = self.catalog().store().events_with_prefix(id).await?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(Error::not_found(format!("no event `{id}`"))
                .with_hint("list events with `basin events ls`")),
            _ => Err(
                Error::invalid(format!("`{id}` starts more than one event id"))
                    .with_hint("give more of the id"),
            ),
        }
    }

    /// Queues failed or dead events again (`None`: every dead one); returns how many.
    pub async fn retry_events(&self, id: Option<&str>) -> Result<usize> {
        let store = self.catalog().store();
        match id {
            None => store.retry_events(None).await,
            Some(id) => {
                let event = self.event(id).await?;
                let n = store
                    .retry_events(Some(std::slice::from_ref(&event.id)))
                    .await?;
                if n == 0 {
                    return Err(Error::invalid(format!(
                        "event {} is {}, not failed or dead",
                        event.id,
                        event.state.as_str()
                    )));
                }
                Ok(n)
            }
        }
    }

    /// Copies `file` into bucket `bucket` as `key`, atomically: it is written under a hidden
    /// name and renamed, so a watcher never sees half a file.
    pub fn put_object(&self, file: &Path, bucket: &str, key: &str) -> Result<u64> {
        let bad_key = key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == ".." || p.starts_with('.'));
        if bad_key {
            return Err(
                Error::invalid(format!("`{key}` is not an object key")).with_hint(
                    "use a relative key like landing/2026/orders.csv (no `..`, no hidden names)",
                ),
            );
        }
        let folder = self.bucket_dir(bucket);
        if !folder.is_dir() {
            return Err(Error::not_found(format!("no bucket `{bucket}`"))
                .with_hint("`basin deploy` creates the buckets its functions watch"));
        }
        let target = folder.join(key);
        let parent = target.parent().expect("a key has a parent folder");
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}: {e}", parent.display())))?;
        let name = target.file_name().expect("checked").to_string_lossy();
        let partial = parent.join(format!(".{name}.part"));
        let bytes = std::fs::copy(file, &partial)
            .map_err(|e| Error::io(format!("cannot read {}: {e}", file.display())))?;
        std::fs::rename(&partial, &target)
            .map_err(|e| Error::io(format!("cannot store {}: {e}", target.display())))?;
        Ok(bytes)
    }
}
