//! What change data capture from any database shares: each source table's changes in a batch,
//! once decoded into Arrow, applied to its two Basin tables. `NS.t` is kept equal to the
//! source (the data files that may hold a changed key are rewritten: copy-on-write) and
//! `NS.t_changelog` gets every change appended, with the operation, the source's position
//! and its commit time before the row image.

mod apply;
pub(crate) mod files;

pub(crate) use apply::{
    Decoded, KeyRows, Log, arrow_schema, column_names, finish_table, key_converter, key_indices,
    stage_table,
};
