//! What a plan says: per object, create, update, replace or destroy, with the reason for each
//! field, what a replace or destroy loses, and what changed by hand since the last apply.

use std::collections::BTreeMap;
use std::path::PathBuf;

use basin_catalog::{CommitId, Operation};
use basin_table::TableUpdates;
use serde::{Deserialize, Serialize};

use super::spec::TokenDecl;

/// The kinds of object a declaration holds, in the order a plan lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Namespace,
    Table,
    Branch,
    Tag,
    Token,
    Function,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::Table => "table",
            Kind::Branch => "branch",
            Kind::Tag => "tag",
            Kind::Token => "token",
            Kind::Function => "function",
        }
    }

    /// The object's address in the applied state: `table sales.orders`.
    pub fn address(self, name: &str) -> String {
        format!("{} {name}", self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Destroy,
}

impl Action {
    /// Terraform's signs: `+`, `~`, `-/+`, `-`.
    pub fn sign(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Destroy => "-",
        }
    }
}

/// One object's change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    /// Why, one line per field.
    pub reasons: Vec<String>,
    /// What a replace or destroy loses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loses: Option<String>,
    /// How the object differs from the state the last apply left it in, when it does: it
    /// was changed by hand since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
}

/// What `basin plan` prints and `basin apply` carries out.
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Where the namespaces and tables are declared for.
    pub branch: String,
    pub file: String,
    pub changes: Vec<Change>,
    /// Objects changed by hand since the last apply that are as declared anyway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    pub applied: bool,
    /// The commit the catalog's objects changed in, once applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The tokens created, with their secrets: shown this once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<NewToken>,
    #[serde(skip)]
    pub(crate) work: Work,
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// The replaces in it, which `--allow-replace` must allow.
    pub fn replaces(&self) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| c.action == Action::Replace)
            .collect()
    }

    /// `Plan: 1 to create, 2 to update, 0 to replace, 0 to destroy.`, once applied `Applied:
    /// 1 created, ...`, or `No changes.`
    pub fn summary(&self) -> String {
        if self.changes.is_empty() {
            return "No changes.".to_string();
        }
        if self.applied {
            return format!(
                "Applied: {} created, {} updated, {} replaced, {} destroyed.",
                self.count(Action::Create),
                self.count(Action::Update),
                self.count(Action::Replace),
                self.count(Action::Destroy)
            );
        }
        format!(
            "Plan: {} to create, {} to update, {} to replace, {} to destroy.",
            self.count(Action::Create),
            self.count(Action::Update),
            self.count(Action::Replace),
            self.count(Action::Destroy)
        )
    }
}

/// A token `basin apply` created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewToken {
    pub name: String,
    pub id: String,
    pub secret: String,
}

/// What applying takes, worked out by the plan.
#[derive(Debug, Default)]
pub(crate) struct Work {
    /// The branch head the plan read.
    pub head: Option<CommitId>,
    /// Namespaces put and dropped, tables dropped: in the catalog commit.
    pub operations: Vec<Operation>,
    /// Tables created, changed and replaced: in the same commit.
    pub tables: Vec<TableUpdates>,
    pub branches_created: Vec<(String, String)>,
    pub branches_dropped: Vec<String>,
    pub tags_created: Vec<(String, String)>,
    pub tags_dropped: Vec<String>,
    pub tokens_created: Vec<(String, TokenDecl)>,
    /// Token ids.
    pub tokens_revoked: Vec<String>,
    /// The folder whose functions to deploy.
    pub deploy: Option<PathBuf>,
    /// The declared objects as they were when planned: the state to record once applied.
    pub observed: State,
}

/// The state a declaration was last applied in: each object it held, as it was then.
pub(crate) type State = BTreeMap<String, serde_json::Value>;
