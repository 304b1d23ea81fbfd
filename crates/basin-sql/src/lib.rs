//! Basin's SQL: a DataFusion session over the tables of one ref (a branch, a tag, or a past
//! commit), with tables named `namespace.table`. Time travel is just another ref.
//!
//! ```no_run
//! # async fn demo(tables: &basin_table::Tables) -> basin_core::Result<()> {
//! let engine = basin_sql::Engine::new(
//!     basin_sql::SqlLimits::default(),
//!     basin_sql::WarehouseFiles::None,
//! )?;
//! let at = tables.catalog().resolve("main").await?;
//! let session = basin_sql::Session::new(&engine, tables, &at, Some("tpch")).await?;
//! let result = session.run("SELECT count(*) FROM lineitem").await?;
//! # Ok(()) }
//! ```
//!
//! The modules, in layers that each use only those below (this file only declares them and
//! re-exports what callers use):
//! - statement bounds, settings and pieces of plans: `guard`, `parse`, `syntax`, `depth`,
//!   `limits`, `planners`, `stores`, `memory`, `results`, `result_cache`, `deadline`, the
//!   optimizer rules (`rules`, `reserve`, `conjunctions`, `view_buffers`), `policy`,
//!   `export`, `json`;
//! - the [`Engine`] every session of a process shares (`engine`; it holds the cluster it
//!   joined: `distributed::{cluster, handles}`);
//! - what reads tables through it: `pruned`, `provider`, `changes` (`table_changes`), `errors`, and the rest of
//!   `distributed` (routing, the plan codec, the embedded scheduler and executors);
//! - the [`Session`] (`session`: `execute` runs single statements and routes queries,
//!   `answers` says which answers the result cache may keep), on top.

mod changes;
mod column_cache;
mod conjunctions;
mod copies;
mod deadline;
mod depth;
pub mod distributed;
mod engine;
mod errors;
mod executors;
pub mod export;
pub mod guard;
mod join_pruning;
pub mod json;
mod limits;
mod mapped;
mod memory;
mod not_in;
mod parse;
mod pass_through;
mod planners;
pub mod policy;
mod provider;
mod pruned;
mod reserve;
mod result_cache;
mod results;
mod rules;
mod session;
mod stores;
mod syntax;
mod view_buffers;
mod window_memory;

#[cfg(test)]
mod fuzz;

pub use changes::{BEFORE_THE_TABLE, conform};
pub use column_cache::{COLUMN_CACHE, COLUMN_CACHE_DISK, ColumnCacheStats};
pub use deadline::Deadline;
pub use engine::Engine;
pub use errors::NamespaceOption;
pub use executors::default_threads as default_query_threads;
pub use guard::{Dialect, Shape, StatementLimits};
pub use limits::{BallistaSettings, LimitCounters, S3_READS, SqlEngine, SqlLimits};
pub use planners::{
    DEFAULT_STACK as DEFAULT_PLANNER_STACK, QUERY_NICE, RUNTIME_STACK,
    default_threads as default_planner_threads,
};
pub use provider::CATALOG;
pub use result_cache::{RESULT_CACHE, ResultCacheStats};
pub use results::{QueryResult, RecordBatchStream, Running, bytes_scanned, text_rows};
pub use session::Session;
pub use stores::WarehouseFiles;
pub use syntax::{SyntaxError, syntax_error};
