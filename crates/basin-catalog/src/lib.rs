//! Basin's versioned catalog, in the style of Nessie: commits map keys (`ns`, `ns.table`) to
//! contents (a namespace, or a table's Iceberg `metadata.json` location); branches and tags
//! are named refs to commits; branches move only by compare-and-swap.
//!
//! The catalog also keeps the event queue, run records, metering and tokens. It persists
//! behind one trait, [`Store`]: [`SqlStore`] (a SQLite file, or memory) for one node,
//! [`PgStore`] (a Postgres database) for several; [`open_store`] picks one by location.
//!
//! ```no_run
//! # async fn demo() -> basin_core::Result<()> {
//! use std::sync::Arc;
//! use basin_catalog::{Catalog, SqlStore, Store};
//! let store = SqlStore::memory().await?;
//! store.initialize().await?;
//! let catalog = Catalog::new(Arc::new(store));
//! let main = catalog.resolve("main").await?;
//! catalog.create_branch("dev", &main).await?; // O(1): one row, no data copied
//! # Ok(()) }
//! ```

mod access;
pub mod actor;
mod catalog;
mod commit_rules;
mod events;
pub mod grants;
pub mod history;
mod model;
mod open;
mod postgres;
pub mod protection;
mod rows;
mod same_sql;
mod sqlite;
pub mod store;

pub use catalog::{
    Catalog, Change, Conflict, DiffEntry, MAIN, MergePlan, Resolved, diff_maps, validate_ref_name,
};
pub use events::{
    DueEvents, EventCounts, EventFilter, EventOutcome, EventRecord, EventState, EventWakeups,
    EventsPruned, NewEvent, RanCall, Settled,
};
pub use grants::{Access, Grant, Grants};
pub use history::{HistoryCut, HistoryPruned, HistoryRetention};
pub use model::{
    Approval, AuditEntry, AuditFilter, Commit, CommitId, CommitRequest, Content, DOOR_PROPERTY,
    Key, NewReview, Operation, Ref, RefKind, ReviewRecord, ReviewState, TokenRecord,
};
pub use open::open_store;
pub use postgres::PgStore;
pub use protection::{Clearance, ProtectRule, Protection};
pub use sqlite::SqlStore;
pub use store::{Audit, Commits, Queue, Records, Reviews, Settings, Store, Tokens};
