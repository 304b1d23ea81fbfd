//! One file per subcommand: parse, call the service, print.

pub mod branch;
pub mod checkout;
pub mod demo;
pub mod diff;
pub mod import;
pub mod init;
pub mod log;
pub mod merge;
pub mod namespace;
pub mod query;
pub mod table;
pub mod tag;

use std::path::Path;

use basin_service::Lakehouse;

/// Opens the lakehouse named by `--home`, or the one holding the current folder.
pub async fn open(home: Option<&Path>) -> anyhow::Result<Lakehouse> {
    let cwd = std::env::current_dir()?;
    Ok(Lakehouse::open(home, &cwd).await?)
}
