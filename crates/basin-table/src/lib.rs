//! Basin's Iceberg tables: where their bytes live ([`Warehouse`]), how a change to a table
//! becomes one commit on a branch of the versioned catalog ([`Tables`]), and the producers
//! iceberg-rust 0.10 lacks (overwrite snapshots, merging two sides' appends).
//!
//! Every write has the same shape: write data files (invisible to readers), stage new table
//! metadata on top of the branch head, make every new file durable (`durable`, through a
//! [`FileSync`]), then move the
//! branch by compare-and-swap. If another
//! writer touched the same table meanwhile, the metadata is re-staged on the new head and the
//! commit retried with jittered backoff until it lands (see `retry`); data files are never
//! rewritten for a retry.

pub mod add_files;
mod bounded;
mod changes;
pub mod constants;
mod durable;
mod error;
mod expire;
pub mod feed;
mod file_sync;
mod files;
mod id_json;
pub mod lineage;
mod loaded;
mod locations;
mod merge;
mod overwrite;
mod retry;
mod s3_storage;
mod staging;
mod summary;
mod tables;
mod updates;
mod warehouse;
mod writer;

pub use bounded::MAX_METADATA_SIZE;
pub use changes::StagedChange;
pub use error::{Error, ErrorKind, Result, from_iceberg, unknown_column_hint};
pub use expire::{ExpirePolicy, snapshots_to_expire};
pub use file_sync::{FileSync, Fsync};
pub use files::{Reachable, StoredFile, is_table_file};
pub use loaded::{LOADED_TABLES, LoadedTablesStats};
pub use merge::{appended_files_since, appended_snapshots_since, live_data_files, planned_files};
pub use s3_storage::{S3Settings, install_crypto_provider};
pub use summary::{ColumnSummary, SnapshotSummary, TableSummary};
pub use tables::{
    MergeableAppends, SOURCE_PROPERTY, Staged, TableChange, Tables, WriteOutcome, created_meanwhile,
};
pub use updates::TableUpdates;
pub use warehouse::{Warehouse, table_of};
pub use writer::{DEFAULT_TARGET_FILE_SIZE, TableWriter, target_file_size};

pub use iceberg;
