//! The Postgres store: one catalog shared by several Basin nodes.
//!
//! The tables are SQLite's (see `migrations.rs`) and so is every rule: the commit
//! checks live in `commit_rules.rs`, the row mapping in `rows.rs`. What differs is how
//! writers on different nodes are kept apart. Every connection runs at READ COMMITTED
//! (set when it opens, whatever the server's or the role's default), and writes take row
//! locks where two nodes could meet:
//!
//! - a commit locks its branch's row (`SELECT .. FOR UPDATE`) before it reads the head. A
//!   second commit to that branch waits there until the first one ends, then reads the head
//!   the first one moved to (READ COMMITTED hands a waiting `FOR UPDATE` the row's newest
//!   version, and each later statement sees everything committed before it starts) and
//!   re-bases onto it by the rule SQLite applies. No update is lost and no commit needs a
//!   retry: the lock queues them, as SQLite's `BEGIN IMMEDIATE` does.
//! - the events a commit consumes are updated `WHERE commit_id IS NULL`, in id order; a
//!   second commit consuming one of them waits for the first, then finds it taken and fails.
//! - a history prune locks `refs` against writes (`SHARE ROW EXCLUSIVE`) while it plans and
//!   removes, and creating a ref takes the lock that conflicts with it before checking its
//!   commit exists: a ref is never made on a commit being removed.
//! - the queue claims with `FOR UPDATE SKIP LOCKED` (see `events.rs`).

mod commits;
mod connect;
mod events;
mod history;
mod migrations;
mod records;

pub use connect::PgStore;
