//! The state a declaration was last applied in, per branch: each declared object as it was
//! right after (`basin apply` records it). A plan compares the objects with it to show what
//! changed by hand since, and destroys what it holds that the declaration no longer does.
//! Objects never declared are never touched.
//!
//! It is a catalog setting, so every node sees the same. It is written after the apply's
//! changes: an apply cut short between the two shows its own changes as drift next time.

use basin_core::{Error, Result};

use super::plan::State;
use crate::Lakehouse;

fn setting(branch: &str) -> String {
    format!("declared:{branch}")
}

pub(crate) async fn read(lake: &Lakehouse, branch: &str) -> Result<State> {
    match lake.catalog().store().setting(&setting(branch)).await? {
        None => Ok(State::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            Error::internal(format!(
                "the state of the last `basin apply` to `{branch}` is not readable: {e}"
            ))
        }),
    }
}

pub(crate) async fn write(lake: &Lakehouse, branch: &str, state: &State) -> Result<()> {
    let text = serde_json::to_string(state)
        .map_err(|e| Error::internal(format!("cannot record the applied state: {e}")))?;
    lake.catalog()
        .store()
        .put_setting(&setting(branch), &text)
        .await
}
