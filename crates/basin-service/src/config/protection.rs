//! `[[branches.protect]]` and `[checks.NAME]`: which branches take changes only by merge, and
//! the queries a merge into them must pass.
//!
//! ```toml
//! [[branches.protect]]
//! pattern = "main"
//! checks = ["no_negative_amounts"]
//! approvals = 0
//!
//! [checks.no_negative_amounts]
//! sql = "SELECT * FROM sales.orders WHERE amount < 0"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use basin_catalog::{ProtectRule, Protection};
use serde::Deserialize;

use crate::{Error, Result};

/// `[branches]`: the protection rules, and the branches a declaration names
/// (`[branches.dev]`, read by `basin plan`; see `crate::declared`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct BranchesSection {
    #[serde(default)]
    pub protect: Vec<ProtectSection>,
    #[serde(flatten)]
    pub declared: BTreeMap<String, toml::Value>,
}

/// One `[[branches.protect]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectSection {
    pub pattern: String,
    #[serde(default)]
    pub checks: Vec<String>,
    #[serde(default)]
    pub approvals: u32,
}

/// `[checks.NAME]`: a query that must return no rows on a merge's result.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    pub sql: String,
}

/// A required check, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub sql: String,
}

/// The protection rules, and the checks by name; every check a rule names must exist.
pub(crate) fn resolve(
    branches: &BranchesSection,
    checks: &BTreeMap<String, CheckSection>,
    path: &Path,
) -> Result<(Protection, BTreeMap<String, Check>)> {
    let mut rules = Vec::new();
    for (i, rule) in branches.protect.iter().enumerate() {
        let at = format!(
            "{}: [[branches.protect]] #{} (pattern = \"{}\")",
            path.display(),
            i + 1,
            rule.pattern
        );
        if rule.pattern.trim().is_empty() {
            return Err(Error::invalid(format!("{at}: the pattern is empty"))
                .with_hint("name a branch (`main`) or a pattern (`release/*`)"));
        }
        for name in &rule.checks {
            if !checks.contains_key(name) {
                let known: Vec<&str> = checks.keys().map(String::as_str).collect();
                return Err(
                    Error::invalid(format!("{at}: no check is named `{name}`")).with_hint(
                        if known.is_empty() {
                            format!("declare it: [checks.{name}] sql = \"SELECT ...\" (a query that returns no rows when all is well)")
                        } else {
                            format!("checks declared: {}", known.join(", "))
                        },
                    ),
                );
            }
        }
        rules.push(ProtectRule {
            pattern: rule.pattern.clone(),
            checks: rule.checks.clone(),
            approvals: rule.approvals,
        });
    }
    let mut resolved = BTreeMap::new();
    for (name, check) in checks {
        if check.sql.trim().is_empty() {
            return Err(Error::invalid(format!(
                "{}: [checks.{name}] sql is empty",
                path.display()
            ))
            .with_hint("give a query that returns the offending rows, e.g. SELECT * FROM sales.orders WHERE amount < 0"));
        }
        resolved.insert(
            name.clone(),
            Check {
                name: name.clone(),
                sql: check.sql.clone(),
            },
        );
    }
    Ok((Protection::new(rules), resolved))
}
