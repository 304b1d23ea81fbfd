//! A deployed function as the catalog records it: its code, environment, limits and triggers;
//! reading and removing those records (`lake.deployed()`). `basin deploy` writes them
//! (`triggers/deploy.rs`); the triggers and the dispatcher read them.

use std::sync::Arc;

use basin_catalog::Grants;
use basin_catalog::actor::Actor;
use basin_core::{Error, Result};
use basin_runtime::{Declaration, Trigger};
use serde::{Deserialize, Serialize};

use crate::Lakehouse;

/// A deployed function, as the catalog store keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeployedFunction {
    pub name: String,
    /// The file it came from, relative to the deployed folder.
    pub file: String,
    pub source: String,
    pub declaration: Declaration,
    pub env_hash: String,
    /// A hash of the code and the environment.
    pub version: String,
    pub deployed_at_ms: i64,
    /// Who deployed it: what it writes acts with their grants. `None` for a function deployed
    /// before Basin recorded it (it acts as the local user, with everything).
    #[serde(default)]
    pub deployed_by: Option<Deployer>,
}

/// Who deployed a function, and the grants it acts with (those they held then; deploying
/// again takes the deployer's grants of that moment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployer {
    /// A token's name, a signed-in subject, or the local user.
    pub principal: String,
    /// `None`: everything (the local user, or a server run with `--no-auth`).
    #[serde(default)]
    pub grants: Option<Grants>,
}

impl DeployedFunction {
    /// Who acts when it runs: `function:NAME`, through the `function` door, with its
    /// deployer's grants.
    pub fn actor(&self) -> Actor {
        Actor {
            principal: Some(format!("function:{}", self.name)),
            token_id: None,
            door: "function",
            bypass_protection: false,
            grants: self
                .deployed_by
                .as_ref()
                .and_then(|d| d.grants.clone())
                .map(Arc::new),
        }
    }

    /// Who deployed it, in words (`ana`; `-` before Basin recorded it).
    pub fn deployer(&self) -> &str {
        self.deployed_by
            .as_ref()
            .map_or("-", |d| d.principal.as_str())
    }

    pub fn trigger(&self) -> Option<&Trigger> {
        self.declaration.trigger.as_ref()
    }

    /// Its trigger in words, an HTTP function's path with its name in it (`http /fn/score`).
    pub fn describe_trigger(&self) -> String {
        match self.trigger() {
            Some(Trigger::Http { path: None }) => format!("http /fn/{}", self.name),
            Some(trigger) => trigger.describe(),
            None => String::new(),
        }
    }
}

/// The deployed functions' records: list, find one by name, remove one (`basin functions`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::deployed`].
#[derive(Clone, Copy)]
pub struct Deployed<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// The deployed functions: see [`Deployed`].
    pub fn deployed(&self) -> Deployed<'_> {
        Deployed { lake: self }
    }
}

impl Deployed<'_> {
    /// Every deployed function, as the catalog store keeps it.
    pub async fn list(&self) -> Result<Vec<DeployedFunction>> {
        let records = self.lake.catalog().store().functions().await?;
        records
            .iter()
            .map(|r| {
                serde_json::from_str(r)
                    .map_err(|e| Error::internal(format!("a deployed function's record: {e}")))
            })
            .collect()
    }

    /// The deployed function named `name`; not found, with the closest name as a hint.
    pub async fn get(&self, name: &str) -> Result<DeployedFunction> {
        let all = self.list().await?;
        let names: Vec<String> = all.iter().map(|f| f.name.clone()).collect();
        all.into_iter().find(|f| f.name == name).ok_or_else(|| {
            let e = Error::not_found(format!("no deployed function `{name}`"));
            match basin_core::suggest(name, names.iter().map(String::as_str)) {
                Some(s) => e.with_hint(format!("did you mean `{s}`?")),
                None => e.with_hint("deploy functions with `basin deploy DIR`"),
            }
        })
    }

    /// Removes the deployed function named `name` (`basin functions rm`).
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.lake.catalog().store().delete_function(name).await
    }
}
