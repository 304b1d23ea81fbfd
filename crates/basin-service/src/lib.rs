//! Basin's operations, one set for the CLI and the server: open a lakehouse folder, then
//! branch, tag, diff, merge, import and query it.
//!
//! ```no_run
//! # async fn demo() -> basin_core::Result<()> {
//! let lakehouse = basin_service::Lakehouse::init(std::path::Path::new("/tmp/lh"), &basin_service::Placement::default()).await?;
//! lakehouse.refs().create_branch("dev", None).await?;
//! let result = lakehouse.query("SELECT 1", Some("main"), None).await?;
//! # Ok(()) }
//! ```

mod buckets;
pub mod config;
pub mod cron;
pub mod declared;
pub mod deployed;
pub mod dispatch;
mod functions;
mod lakehouse;
mod links;
pub mod maintenance;
pub mod pipeline;
pub mod queue;
pub mod sources;
pub mod tpch;
pub mod triggers;
pub mod uploads;

#[cfg(test)]
mod fuzz;

pub use basin_core::{Error, ErrorKind, Result};
pub use buckets::Buckets;
pub use config::BASIN_DIR;
pub use config::{ServerSettings, TlsFiles};
pub use deployed::Deployed;
pub use functions::{Functions, InvokeReport, InvokeRequest, Notify, PYARROW};
pub use lakehouse::add_files::AddFilesReport;
pub use lakehouse::audit::{AuditLog, MAX_AUDIT_ENTRIES, UNKNOWN_TOKEN};
pub use lakehouse::checks::CheckOutcome;
pub use lakehouse::graph::GraphEntry;
pub use lakehouse::lineage::{Direction, Lineage, LineageEdge, LineageGraph, LineageNode};
pub use lakehouse::merge::MergeReport;
pub use lakehouse::namespaces::{Namespaces, PropertiesUpdate};
pub use lakehouse::oidc::SignedIn;
pub use lakehouse::refs::{LogEntry, RefInfo, Refs, TableDiff};
pub use lakehouse::reviews::{ReviewDetail, Reviews};
pub use lakehouse::tables::{TableEntry, Tables};
pub use lakehouse::tokens::{Principal, Role, Tokens};
pub use lakehouse::usage::{
    QueryUsage, Usage, UsageBy, UsageReport, UsageRow, cost, summarize_usage,
};
pub use lakehouse::{Lakehouse, Placement};
pub use maintenance::MaintenanceRun;
pub use maintenance::compaction::{CompactOptions, CompactReport};
pub use maintenance::expire::{ExpireOptions, ExpireReport, ExpiredSnapshot};
