//! A deployed function as the catalog records it: its code, environment, limits and triggers.

use basin_runtime::{Declaration, Trigger};
use serde::{Deserialize, Serialize};

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
}

impl DeployedFunction {
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
