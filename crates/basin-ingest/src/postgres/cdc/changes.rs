//! A source transaction's changes as the stream receives them, and the Basin tables a
//! source table's changes go to.

use std::collections::HashMap;
use std::sync::Arc;

use basin_catalog::Key;

use super::pgoutput::{Relation, Tuple};
use crate::postgres::connect::PgTable;
use crate::postgres::copy_decode::PG_EPOCH_MICROS;
use crate::postgres::types::Decode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Op::Insert => "I",
            Op::Update => "U",
            Op::Delete => "D",
            Op::Truncate => "T",
        }
    }
}

/// One row change, with the relation (columns) it was sent under.
pub(crate) struct Change {
    pub op: Op,
    pub relation: Arc<Relation>,
    pub new: Option<Tuple>,
    pub old: Option<Tuple>,
}

/// A committed source transaction's changes to the source's tables.
pub(crate) struct Txn {
    /// The commit's end LSN: the position recorded once it is applied.
    pub end_lsn: u64,
    /// Microseconds since the Unix epoch.
    pub commit_us: i64,
    pub changes: Vec<Change>,
}

/// A source table and where its changes go.
pub(crate) struct Target {
    pub table: PgTable,
    pub current: Key,
    pub changelog: Key,
    /// How each column (by name) decodes, from the source's catalog.
    pub decodes: HashMap<String, Decode>,
}

/// Microseconds since the Unix epoch of a Postgres timestamp (microseconds since 2000).
pub(crate) fn unix_micros(pg_micros: i64) -> i64 {
    pg_micros.saturating_add(PG_EPOCH_MICROS)
}
