//! Triggered functions: declared with `@basin.on_object`, `on_commit`, `schedule` or `http`, deployed
//! with `basin deploy`, fed by a durable queue in the catalog store, and dispatched by
//! `basin serve`.

pub mod commits;
pub mod deploy;
mod handle;
pub mod http;
mod objects;
pub mod s3;
pub mod schedule;
pub mod watch;

pub use handle::Triggers;
pub(crate) use objects::{ObjectMeta, object_events};
