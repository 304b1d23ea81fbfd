//! Change data capture from Postgres: a full load from a replication slot's exported
//! snapshot, then the slot's changes (pgoutput, binary values) applied in batches, exactly
//! once.
//!
//! Each source table `s.t` has two Basin tables: `NS.t`, kept equal to the source (every
//! batch rewrites the data files that hold changed keys: copy-on-write), and
//! `NS.t_changelog`, every change appended with `_op`, `_lsn` and `_commit_ts`. A batch is
//! whole source transactions, committed to every table it touches in one catalog commit that
//! records the last transaction's commit LSN in each table's snapshot summary
//! (`basin.source.lsn`). The LSN is acknowledged to Postgres only after that commit; after a
//! restart the transactions at or below the recorded LSN that Postgres sends again are
//! skipped.

mod apply;
mod changes;
pub mod pgoutput;
mod position;
mod rows;
pub mod slot;
mod stream;
mod targets;

pub use crate::database::follow::{
    BatchReport, FollowEvent, FollowProgress, FollowReport, StreamOptions,
};
pub use position::{
    COMMIT_TIME_PROPERTY, LSN_PROPERTY, Position, SLOT_PROPERTY, SOURCE_PROPERTY, SYSTEM_PROPERTY,
    Stored, stored_position,
};
pub use stream::{FollowRequest, follow};
pub use targets::CHANGELOG_SUFFIX;
