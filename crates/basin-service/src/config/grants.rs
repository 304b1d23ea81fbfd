//! `[[grants]]`: what a principal (a token's name) may read and write, besides its token's
//! own grants.
//!
//! ```toml
//! [[grants]]
//! to = "analysts"          # a token's name
//! read = ["sales.*"]       # namespace/table patterns
//! write = ["sandbox.*"]
//! branches = ["*"]         # the branches both cover (default "*")
//! ```

use std::path::Path;

use basin_catalog::{Access, Grant};
use serde::Deserialize;

use crate::{Error, Result};

/// One `[[grants]]` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSection {
    pub to: String,
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    pub branches: Option<Vec<String>>,
    #[serde(default)]
    pub admin: bool,
}

/// Grants declared for a principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredGrants {
    pub to: String,
    pub grants: Vec<Grant>,
}

pub(crate) fn resolve(sections: &[GrantSection], path: &Path) -> Result<Vec<DeclaredGrants>> {
    let mut declared = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        let at = format!("{}: [[grants]] #{}", path.display(), i + 1);
        if section.to.trim().is_empty() {
            return Err(Error::invalid(format!("{at}: `to` is empty"))
                .with_hint("name the token the grant is for: to = \"analysts\""));
        }
        let branches = section.branches.clone().unwrap_or_else(|| vec!["*".into()]);
        if branches.is_empty() {
            return Err(
                Error::invalid(format!("{at}: `branches` is empty")).with_hint(
                    "leave it out for every branch, or list patterns: [\"main\", \"dev/*\"]",
                ),
            );
        }
        let mut grants = Vec::new();
        if section.admin {
            grants.push(Grant::admin());
        }
        for (access, objects) in [
            (Access::Read, &section.read),
            (Access::Write, &section.write),
        ] {
            if !objects.is_empty() {
                grants.push(Grant {
                    access,
                    objects: objects.clone(),
                    branches: branches.clone(),
                });
            }
        }
        if grants.is_empty() {
            return Err(
                Error::invalid(format!("{at} (to = \"{}\") grants nothing", section.to))
                    .with_hint("add read = [\"PATTERN\", ...], write = [...] or admin = true"),
            );
        }
        declared.push(DeclaredGrants {
            to: section.to.clone(),
            grants,
        });
    }
    Ok(declared)
}
