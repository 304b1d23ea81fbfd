//! A full load of Postgres tables into Iceberg tables, from one consistent point in time.
//!
//! One connection opens a `REPEATABLE READ` transaction and exports its snapshot
//! (`pg_export_snapshot()`); `readers` more connections import it (`SET TRANSACTION
//! SNAPSHOT`), so every table is read as of the same instant. Each table is read by binary
//! `COPY` over ctid ranges in parallel, decoded straight into Arrow and written as Parquet;
//! then every table is replaced in one catalog commit: all or nothing.
//!
//! A snapshot load exports the snapshot from a plain transaction. A change-data-capture
//! source's first load creates a logical replication slot with an exported snapshot instead,
//! so the changes streamed from the slot (see [`cdc`]) start exactly where the load read, and
//! the load's commit records the slot's consistent point.

pub mod cdc;
mod connect;
mod copy_decode;
mod load;
mod numeric;
mod read;
mod source;
mod types;

pub use crate::database::report::{LoadEvent, LoadProgress, LoadReport, SkippedColumn, TableLoad};
pub use load::{LoadRequest, load};
pub use source::PgSource;
