//! The SQLite store: a file for the embedded lakehouse, or memory for tests.
//!
//! Each commit stores the full key -> content map of its tree (copied inside the database with
//! one `INSERT .. SELECT`), so reading any ref is one indexed lookup and creating a branch is
//! one row, whatever the number of tables. The price is rows per commit proportional to the
//! number of keys; compaction of old trees belongs to snapshot expiry.

mod commits;
mod connect;
mod events;
mod history;
mod migrations;
mod records;

pub use connect::SqlStore;
