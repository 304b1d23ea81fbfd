//! The `Pipelines` handle, `lake.pipelines()`, which every file of `pipeline/` adds its
//! operations to. It has a file of its own, as every folder's handle does, so that they can
//! all name it: in a `mod.rs` that imports or re-exports them, it would make an import circle.

use crate::Lakehouse;

/// Pipeline runs: run a project, list and show runs, replay one, settle the abandoned
/// (`basin run`, `basin runs`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::pipelines`].
#[derive(Clone, Copy)]
pub struct Pipelines<'a> {
    pub(super) lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Pipeline runs: see [`Pipelines`].
    pub fn pipelines(&self) -> Pipelines<'_> {
        Pipelines { lake: self }
    }
}
