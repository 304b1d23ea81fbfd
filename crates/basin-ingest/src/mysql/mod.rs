//! A full load of MySQL and MariaDB tables into Iceberg tables, from one point in time.
//!
//! With several readers, a coordinator holds `FLUSH TABLES WITH READ LOCK` while each reader
//! starts `START TRANSACTION WITH CONSISTENT SNAPSHOT` and the binary log's position (and
//! GTID set) is read, then lets go: every table is read as of that instant, tables (or key
//! ranges of large ones) shared out among the readers. With one reader, its own consistent snapshot is the instant (MariaDB
//! says where the log stood at it). Values come over the binary protocol, typed, straight
//! into Arrow ([`types`] says what each type becomes); then every table is replaced in one
//! catalog commit, which records the log's position for change data capture to start from.
//!
//! A large table whose primary key is one integer column is read by several readers, each
//! a range of its key ([`ranges`]). Change data capture from the binary log is in [`cdc`].

pub mod cdc;
mod connect;
mod load;
mod ranges;
mod types;

pub use connect::MySource;
pub use load::{BINLOG_PROPERTY, GTID_PROPERTY, load_mysql};
