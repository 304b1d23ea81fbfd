//! Basin's importer: CSV, newline-delimited JSON, Parquet and Arrow IPC files into an Iceberg table on
//! a branch, streaming with bounded memory, as one commit: all files or none.
//!
//! Types are inferred (decimals kept exact) or taken from the existing table. A malformed
//! row, a value that does not fit its column, or a file whose columns differ from the table
//! fails the import with the file, line and column named, and nothing is committed.
//!
//! [`postgres`] loads a Postgres database's tables from one consistent snapshot, all of them
//! in one commit; [`postgres::cdc`] then streams their changes from a replication slot,
//! exactly once.

mod convert;
mod csv_input;
mod database;
mod import;
mod infer;
mod input_files;
pub mod mysql;
pub mod postgres;
mod probe;
mod read;
mod read_errors;
mod schema;
mod stream;

#[cfg(test)]
mod fuzz;

pub use convert::{SAMPLE_ROWS, text_format, to_arrow_file};
pub use import::{ImportReport, ImportRequest, MissingColumn, Mode, import};
pub use input_files::Format;
pub use read::CsvOptions;
pub use schema::{partition_spec, partition_term};
pub use stream::Progress;
