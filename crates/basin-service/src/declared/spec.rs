//! The declared lakehouse as basin.toml writes it: one section per object, keyed by name.
//!
//! ```toml
//! [namespaces.sales]
//! properties = { owner = "finance" }
//!
//! [tables."sales.orders"]
//! columns = [
//!   { name = "id", type = "long", required = true },
//!   { name = "amount", type = "decimal(12, 2)" },
//!   { name = "ordered_at", type = "timestamptz" },
//! ]
//! partition = ["day(ordered_at)"]
//! sort = ["id"]
//! properties = { "write.target-file-size-bytes" = "134217728" }
//!
//! [branches.dev]
//! from = "main"
//!
//! [tags.q3-close]
//! at = "main"
//!
//! [tokens.ci]
//! role = "writer"
//!
//! [deploy]
//! functions = "functions"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use basin_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Everything a basin.toml declares (its other sections are settings, read by `config`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Declaration {
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceDecl>,
    #[serde(default)]
    pub tables: BTreeMap<String, TableDecl>,
    #[serde(default)]
    branches: BranchesDecl,
    #[serde(default)]
    pub tags: BTreeMap<String, TagDecl>,
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenDecl>,
    #[serde(default)]
    pub deploy: Option<DeployDecl>,
    /// The named branches, from `[branches.NAME]` (beside `[[branches.protect]]`).
    #[serde(skip)]
    pub branch_decls: BTreeMap<String, BranchDecl>,
    /// Where it was read from: its file, or what sent it.
    #[serde(skip)]
    pub origin: String,
}

/// `[branches]` holds the protection rules too; the rest are branches.
#[derive(Clone, Debug, Default, Deserialize)]
struct BranchesDecl {
    #[serde(default)]
    #[allow(dead_code, reason = "read by config::protection")]
    protect: Vec<toml::Value>,
    #[serde(flatten)]
    named: BTreeMap<String, BranchDecl>,
}

/// `[namespaces.NAME]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDecl {
    /// The properties it must have; others it has are left as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// `[tables."NS.TABLE"]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableDecl {
    /// In order.
    pub columns: Vec<ColumnDecl>,
    /// Partition fields: `region`, `day(ordered_at)`, `bucket(16, id)`, `truncate(4, name)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition: Vec<String>,
    /// Sort fields: `id`, `ordered_at desc`, `day(ordered_at) asc nulls last`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sort: Vec<String>,
    /// The properties it must have; others it has are left as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// One column: `{ name = "id", type = "long", required = true }`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDecl {
    pub name: String,
    /// An Iceberg type: `long`, `decimal(12, 2)`, `timestamptz`, ...; a nested one as its
    /// Iceberg JSON (`{"type": "list", ...}`).
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// `[branches.NAME]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BranchDecl {
    /// Where it starts when it is created (default: the branch the plan is for). A branch
    /// that exists is left where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// `[tags.NAME]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TagDecl {
    /// A ref or commit, read when the tag is created; a full commit id is also checked
    /// afterwards (a tag does not move, so a different one is a replace).
    pub at: String,
}

/// `[tokens.NAME]`: a role, or grants of its own.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenDecl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
}

/// `[deploy]`: the folder whose triggered functions `basin deploy` would deploy.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeployDecl {
    /// Relative to basin.toml's folder.
    pub functions: PathBuf,
}

impl Declaration {
    /// Reads the declaration in `path` (the folder of `[deploy] functions` is relative to it).
    pub fn read(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(format!("{} does not exist", path.display()))
                    .with_hint("write the lakehouse's objects there, or start from `basin export > basin.toml`"));
            }
            Err(e) => return Err(Error::io_with(format!("cannot read {}", path.display()), e)),
        };
        Self::parse(&text, path, Some(path.parent().unwrap_or(Path::new("."))))
    }

    /// Reads a declaration sent as text (`origin` names it in errors). Without `dir` (sent
    /// over the API, from another machine) it may not name a folder of functions.
    pub fn parse(text: &str, origin: &Path, dir: Option<&Path>) -> Result<Self> {
        let mut declaration: Declaration = toml::from_str(text).map_err(|e| {
            crate::config::toml_error(
                origin,
                text,
                &e,
                "see the object reference in docs/declarative.md",
            )
        })?;
        declaration.origin = origin.display().to_string();
        declaration.branch_decls = std::mem::take(&mut declaration.branches.named);
        if let Some(deploy) = &mut declaration.deploy {
            let Some(dir) = dir else {
                return Err(Error::invalid(format!(
                    "{}: [deploy] names a folder of functions on this machine, which the server cannot read",
                    origin.display()
                ))
                .with_hint("plan and apply it where the folder is, or deploy the folder with `basin --remote URL deploy DIR`"));
            };
            if deploy.functions.is_relative() {
                deploy.functions = dir.join(&deploy.functions);
            }
        }
        Ok(declaration)
    }
}

/// An error about the section `[KIND."NAME"]`, saying so.
pub(crate) fn in_section(e: Error, kind: &str, name: &str) -> Error {
    in_context(e, &format!("[{kind}.\"{name}\"]"))
}

/// An error prefixed with what it is about: ``table `sales.orders`: ...``.
pub(crate) fn in_context(mut e: Error, context: &str) -> Error {
    e.message = format!("{context}: {}", e.message);
    e
}
