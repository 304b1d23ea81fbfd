//! Where a MySQL source stands in Basin: the binary log `file:position` just after the last
//! source transaction applied (or where the log stood at the full load), recorded in each
//! table snapshot's summary, and read back to resume exactly there.

use std::cmp::Ordering;
use std::fmt;

use basin_catalog::{Key, Resolved};
use basin_core::Result;
use basin_table::Tables;

use crate::database::follow::{COMMIT_TIME_PROPERTY, recorded};
use crate::mysql::{BINLOG_PROPERTY, GTID_PROPERTY};

/// A place in the server's binary log: a file (`mysql-bin.000042`) and a byte offset in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinlogPos {
    pub file: String,
    pub offset: u64,
}

impl BinlogPos {
    /// Reads `file:offset`.
    pub fn parse(text: &str) -> Option<Self> {
        let (file, offset) = text.rsplit_once(':')?;
        Some(Self {
            file: file.to_string(),
            offset: offset.parse().ok()?,
        })
    }

    /// The file's number: the log's files are numbered in order (`.000042`).
    fn number(&self) -> u64 {
        self.file
            .rsplit_once('.')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }

    /// One number that orders positions, for the changelog's `_binlog_pos`: the file's
    /// number times 2^32 plus the offset (a file holds at most 4 GiB).
    pub fn sequence(&self) -> i64 {
        ((self.number() << 32) | (self.offset & 0xffff_ffff)) as i64
    }
}

impl fmt::Display for BinlogPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)
    }
}

impl PartialOrd for BinlogPos {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BinlogPos {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.number(), &self.file, self.offset).cmp(&(other.number(), &other.file, other.offset))
    }
}

/// What the tables' snapshots on a branch say about a MySQL source.
#[derive(Clone, Debug, Default)]
pub struct StoredBinlog {
    /// The position the newest of them records.
    pub position: Option<BinlogPos>,
    /// When Basin committed it (ms since the epoch).
    pub basin_commit_ms: Option<i64>,
    /// When the last transaction applied committed at the source (ms since the epoch); none
    /// after a full load.
    pub source_commit_ms: Option<i64>,
    /// The GTID set at that position, where the server keeps one.
    pub gtid: Option<String>,
}

/// Reads the position stored for `source` in the snapshots of `keys` as of `at`: the one of
/// the newest Basin commit that records one.
pub async fn stored_binlog(
    tables: &Tables,
    at: &Resolved,
    source: &str,
    keys: &[Key],
) -> Result<StoredBinlog> {
    let mut stored = StoredBinlog::default();
    for (props, committed_ms) in recorded(tables, at, source, keys, BINLOG_PROPERTY).await? {
        let Some(position) = props.get(BINLOG_PROPERTY).and_then(|p| BinlogPos::parse(p)) else {
            continue;
        };
        // The newest Basin commit says where the stream stands: positions of two servers (a
        // failover), or of one before `RESET MASTER`, do not compare.
        if stored.basin_commit_ms.is_none_or(|ms| committed_ms > ms) {
            stored = StoredBinlog {
                position: Some(position),
                basin_commit_ms: Some(committed_ms),
                source_commit_ms: props
                    .get(COMMIT_TIME_PROPERTY)
                    .and_then(|ms| ms.parse().ok()),
                gtid: props.get(GTID_PROPERTY).cloned(),
            };
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_file_number_then_offset() {
        let a = BinlogPos::parse("mysql-bin.000009:91234").unwrap();
        let b = BinlogPos::parse("mysql-bin.000010:4").unwrap();
        assert!(a < b);
        assert!(a.sequence() < b.sequence());
        assert_eq!(b.to_string(), "mysql-bin.000010:4");
        assert_eq!(b.sequence(), (10 << 32) | 4);
        assert!(BinlogPos::parse("no position").is_none());
    }
}
