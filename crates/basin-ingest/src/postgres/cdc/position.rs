//! Where a source stands in Basin: the position the tables hold (the commit LSN of the last
//! source transaction applied, on which slot of which server), the snapshot-summary
//! properties that record it, and reading it back.

use basin_catalog::{CommitRequest, Key, Resolved};
use basin_core::Result;
use basin_table::Tables;

use super::slot;
use crate::database::follow::recorded;

/// Snapshot summary keys a source's commits carry.
pub const SOURCE_PROPERTY: &str = basin_table::SOURCE_PROPERTY;
pub const LSN_PROPERTY: &str = "basin.source.lsn";
pub const SLOT_PROPERTY: &str = "basin.source.slot";
pub const SYSTEM_PROPERTY: &str = "basin.source.system-id";
pub use crate::database::follow::COMMIT_TIME_PROPERTY;

/// Up to where the Basin tables hold a source: the commit LSN of the last source transaction
/// applied (or the slot's consistent point after a full load), on which slot of which server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub lsn: u64,
    pub slot: String,
    pub system_id: String,
}

impl Position {
    /// `request` with this position as properties (the catalog commit's and each table
    /// snapshot's).
    pub(crate) fn record(&self, request: CommitRequest) -> CommitRequest {
        request
            .with_property(LSN_PROPERTY, slot::format_lsn(self.lsn))
            .with_property(SLOT_PROPERTY, &self.slot)
            .with_property(SYSTEM_PROPERTY, &self.system_id)
    }
}

/// What the tables' snapshots on a branch say about a source: the newest position any of
/// them records (a batch records it on the tables it touched), and when it was committed.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    pub position: Option<Position>,
    /// When Basin committed it (ms since the epoch).
    pub basin_commit_ms: Option<i64>,
}

/// Reads the position stored for `source` in the snapshots of `keys` as of `at`: for each
/// table, its newest snapshot that records one (a compaction's snapshot records none).
pub async fn stored_position(
    tables: &Tables,
    at: &Resolved,
    source: &str,
    keys: &[Key],
) -> Result<Stored> {
    let mut stored = Stored::default();
    for (props, committed_ms) in recorded(tables, at, source, keys, LSN_PROPERTY).await? {
        let Some(lsn) = props.get(LSN_PROPERTY).and_then(|l| slot::parse_lsn(l)) else {
            continue;
        };
        if stored.position.as_ref().is_none_or(|p| lsn > p.lsn) {
            stored.position = Some(Position {
                lsn,
                slot: props.get(SLOT_PROPERTY).cloned().unwrap_or_default(),
                system_id: props.get(SYSTEM_PROPERTY).cloned().unwrap_or_default(),
            });
            stored.basin_commit_ms = Some(committed_ms);
        }
    }
    Ok(stored)
}
