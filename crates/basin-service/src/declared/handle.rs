//! `lake.declared()`: the lakehouse as code (`basin plan`, `basin apply`, `basin export`).

use std::path::PathBuf;

use basin_core::{Error, ErrorKind, Result};

use super::plan::{Change, Plan};
use super::spec::Declaration;
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

    /// Compares `declaration` with the lakehouse; its namespaces and tables are for `branch`
    /// (default: the current branch). Changes nothing.
    pub async fn plan(&self, declaration: &Declaration, branch: Option<&str>) -> Result<Plan> {
        super::planner::plan(self.lake, declaration, branch).await
    }

    /// Carries out `plan` (made from `declaration`): refused, with nothing applied, when it
    /// holds a replace and `allow_replace` is not set. Returns it applied, with the commit and
    /// the secrets of the tokens it made.
    pub async fn apply(
        &self,
        declaration: &Declaration,
        plan: Plan,
        allow_replace: bool,
    ) -> Result<Plan> {
        super::apply::apply(self.lake, declaration, plan, allow_replace).await
    }

    /// Plans and applies in one call, for a caller that approved a plan it made earlier
    /// (over the API): refused, with nothing applied, when the plan now differs from
    /// `approved`.
    pub async fn apply_approved(
        &self,
        declaration: &Declaration,
        branch: Option<&str>,
        approved: Option<&[Change]>,
        allow_replace: bool,
    ) -> Result<Plan> {
        let plan = self.plan(declaration, branch).await?;
        if let Some(approved) = approved
            && approved != plan.changes.as_slice()
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the lakehouse changed since the plan was made: it is now `{}`, not the one approved",
                    plan.summary()
                ),
            )
            .with_hint("plan again, check it, and apply that"));
        }
        self.apply(declaration, plan, allow_replace).await
    }

    /// The lakehouse as a declaration (namespaces and tables of `branch`).
    pub async fn export(&self, branch: Option<&str>) -> Result<String> {
        super::export::export(self.lake, branch).await
    }
}
