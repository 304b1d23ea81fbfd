//! The `Sources` handle, `lake.sources()`, which every file of `sources/` adds its
//! operations to. It has a file of its own, as every folder's handle does, so that they can
//! all name it: in a `mod.rs` that imports or re-exports them, it would make an import circle.

use crate::Lakehouse;

/// Database sources: declare and remove them, load and follow them (`basin source`,
/// `basin ingest`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::sources`].
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub(super) lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Database sources: see [`Sources`].
    pub fn sources(&self) -> Sources<'_> {
        Sources { lake: self }
    }
}
