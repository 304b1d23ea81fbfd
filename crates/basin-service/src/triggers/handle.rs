//! The `Triggers` handle, `lake.triggers()`, which every file of `triggers/` adds its
//! operations to. It has a file of its own, as every folder's handle does, so that they can
//! all name it: in a `mod.rs` that imports or re-exports them, it would make an import circle.

use crate::Lakehouse;

/// Triggered functions: deploy, list with their event counts, find the one at an HTTP path,
/// put objects into buckets, turn S3 notifications into events (`basin deploy`,
/// `basin functions ls`, `basin put`). The records themselves are [`crate::Deployed`]'s, the
/// buckets [`crate::Buckets`]'.
///
/// A handle borrowing the lakehouse: [`Lakehouse::triggers`].
#[derive(Clone, Copy)]
pub struct Triggers<'a> {
    pub(super) lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Triggered functions: see [`Triggers`].
    pub fn triggers(&self) -> Triggers<'_> {
        Triggers { lake: self }
    }
}
