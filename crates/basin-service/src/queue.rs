//! The event queue as the service uses it: ids, the node's name, leases kept while work runs,
//! and listing and retrying events.

use basin_catalog::{EventCounts, EventFilter, EventRecord};
use basin_core::time::now_ms;
use basin_core::{Error, Result};
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

/// This process's name among the nodes sharing a catalog: `BASIN_NODE_NAME`, else the host's
/// name and the process id (`db-worker-3:4127`). Recorded with the events it runs and the
/// leases it holds.
pub fn node_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        if let Some(name) = crate::config::env::get(crate::config::env::NODE_NAME) {
            return name;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "node".to_string());
        format!("{host}:{}", std::process::id())
    })
}

/// Renews the leases of `ids` every third of `[functions] event_lease` until the returned
/// guard drops.
pub(crate) fn renew_leases(lakehouse: &Lakehouse, ids: Vec<String>) -> Background {
    let store = lakehouse.catalog().store().clone();
    let lease = lakehouse.settings().event_lease;
    Background(tokio::spawn(async move {
        loop {
            tokio::time::sleep(lease / 3).await;
            let until = now_ms() + lease.as_millis() as i64;
            if let Err(e) = store.renew_leases(&ids, until).await {
                tracing::warn!("cannot renew the leases of {} events: {e}", ids.len());
            }
        }
    }))
}

/// A task of the dispatcher (renewing leases, listening), stopped when this drops.
pub(crate) struct Background(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The queue's events: listing, counting, retrying (`basin events`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::queue`].
#[derive(Clone, Copy)]
pub struct Queue<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// The queue's events: see [`Queue`].
    pub fn queue(&self) -> Queue<'_> {
        Queue { lake: self }
    }
}

impl Queue<'_> {
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        self.lake.catalog().store().events(filter).await
    }

    pub async fn event_counts(&self, function: Option<&str>) -> Result<EventCounts> {
        self.lake.catalog().store().event_counts(function).await
    }

    /// The event whose id is or starts with `id`.
    pub async fn event(&self, id: &str) -> Result<EventRecord> {
        let mut found = self.lake.catalog().store().events_with_prefix(id).await?;
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
        let store = self.lake.catalog().store();
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
}
