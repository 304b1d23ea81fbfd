//! Basin's operations, one set for the CLI and the server: open a lakehouse folder, then
//! branch, tag, diff, merge, import and query it.
//!
//! ```no_run
//! # async fn demo() -> basin_core::Result<()> {
//! let lakehouse = basin_service::Lakehouse::init(std::path::Path::new("/tmp/lh"), &basin_service::Placement::default()).await?;
//! lakehouse.create_branch("dev", None).await?;
//! let result = lakehouse.query("SELECT 1", Some("main"), None).await?;
//! # Ok(()) }
//! ```

pub mod cdc;
mod compact;
pub mod config;
pub mod cron;
pub mod deployed;
pub mod dispatch;
mod expire;
mod functions;
pub mod gc;
mod lakehouse;
mod links;
pub mod maintenance;
mod merge;
mod namespaces;
pub mod pipeline;
pub mod queue;
mod refs;
pub mod sources;
mod tables;
mod tokens;
pub mod tpch;
pub mod triggers;
mod usage;

#[cfg(test)]
mod fuzz;

pub use basin_core::{Error, ErrorKind, Result};
pub use compact::{CompactOptions, CompactReport};
pub use config::{ServerSettings, TlsFiles};
pub use expire::{ExpireOptions, ExpireReport, ExpiredSnapshot};
pub use functions::{InvokeReport, InvokeRequest, Notify, PYARROW};
pub use lakehouse::{BASIN_DIR, Lakehouse, Placement};
pub use maintenance::MaintenanceRun;
pub use merge::MergeReport;
pub use namespaces::PropertiesUpdate;
pub use refs::{LogEntry, RefInfo, TableDiff};
pub use tables::TableEntry;
pub use tokens::Role;
pub use usage::{QueryUsage, UsageBy, UsageReport, UsageRow, cost, summarize_usage};
