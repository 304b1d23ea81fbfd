//! `lake.declared()`: the lakehouse as code (`basin plan`, `basin apply`, `basin export`).

use std::path::{Path, PathBuf};

use basin_core::Result;

use super::plan::Plan;
use crate::Lakehouse;

#[derive(Clone, Copy)]
pub struct Declared<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    pub fn declared(&self) -> Declared<'_> {
        Declared { lake: self }
    }
}

impl Declared<'_> {
    /// The declaration a plan reads when none is named: the lakehouse's basin.toml.
    pub fn default_file(&self) -> PathBuf {
        self.lake.root().join("basin.toml")
    }

    /// Compares the declaration in `file` with the lakehouse; its namespaces and tables are
    /// for `branch` (default: the current branch). Changes nothing.
    pub async fn plan(&self, file: &Path, branch: Option<&str>) -> Result<Plan> {
        super::planner::plan(self.lake, file, branch).await
    }

    /// Carries out `plan` (made from `file`): refused, with nothing applied, when it holds a
    /// replace and `allow_replace` is not set. Returns it applied, with the commit and the
    /// secrets of the tokens it made.
    pub async fn apply(&self, file: &Path, plan: Plan, allow_replace: bool) -> Result<Plan> {
        super::apply::apply(self.lake, file, plan, allow_replace).await
    }

    /// The lakehouse as a declaration (namespaces and tables of `branch`).
    pub async fn export(&self, branch: Option<&str>) -> Result<String> {
        super::export::export(self.lake, branch).await
    }
}
