//! The `Maintenance` handle, `lake.maintenance()`, which every file of `maintenance/` adds its
//! operations to. It has a file of its own, as every folder's handle does, so that they can
//! all name it: in a `mod.rs` that imports or re-exports them, it would make an import circle.

use crate::Lakehouse;

/// Compaction, snapshot expiry, gc, and the maintenance runs that do all three
/// (`basin table compact|expire`, `basin gc`, `basin maintenance`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::maintenance`].
#[derive(Clone, Copy)]
pub struct Maintenance<'a> {
    pub(super) lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Compaction, snapshot expiry, gc and maintenance runs: see [`Maintenance`].
    pub fn maintenance(&self) -> Maintenance<'_> {
        Maintenance { lake: self }
    }
}
