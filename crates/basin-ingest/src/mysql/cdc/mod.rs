//! Change data capture from MySQL and MariaDB: after a full load (which records where the
//! binary log stood), the log is read from that position as a replica reads it (row events,
//! whole rows), and whole source transactions are applied in batches, each batch one catalog
//! commit that records the log's `file:position` after its last transaction; a restart reads
//! on from exactly there, so no change is lost or applied twice.
//!
//! Each source table `db.t` has two Basin tables, as for Postgres: `NS.t`, kept equal to the
//! source (copy-on-write by primary key), and `NS.t_changelog`, every change appended with
//! `_op`, `_binlog_pos` and `_commit_ts`.
//!
//! On MariaDB the stream also follows the GTID state, recorded with each batch
//! (`basin.source.gtid`), and resumes from it (`@slave_connect_state`), so a purged file or
//! another server of the same replication topology does not stop it. Not built yet: MySQL's
//! GTIDs (`COM_BINLOG_DUMP_GTID`): a MySQL source resumes by file and offset.

mod apply;
mod events;
mod gtid;
mod position;
mod stream;
mod targets;
mod values;

pub use position::{BinlogPos, StoredBinlog, stored_binlog};
pub use stream::{MyFollowRequest, follow_mysql};
pub use targets::source_position;
