//! Basin's ground floor: the nouns every crate shares and nothing that does I/O.
//!
//! - [`Error`]: one error type for all layers, with a matchable [`ErrorKind`], a message that
//!   names what it is about, a `hint:` and its cause; the front doors map kinds to their wire
//!   codes (see `docs/architecture.md`).
//! - [`units`]: sizes and durations as people write and read them (`512MiB`, `30s`).
//! - [`time`] and [`ids`]: the clock as the catalog records it, and the ids Basin mints.
//! - [`metering`]: what one function invocation or query used.

mod error;
pub mod ids;
pub mod metering;
pub mod time;
pub mod units;

pub use error::{Error, ErrorKind, Result, Subject, inline, split_hint, suggest};
pub use metering::{InvocationKind, InvocationRecord, InvocationStatus};
