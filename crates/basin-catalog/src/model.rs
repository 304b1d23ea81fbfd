//! The catalog's nouns: commits, refs, keys and the contents a key points at.

use std::collections::BTreeMap;
use std::fmt;

use crate::protection::Clearance;
use serde::{Deserialize, Serialize};

use basin_core::{Error, Result};

/// A commit id: 32 lowercase hex digits. Users may name a commit by any unique prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommitId(String);

impl CommitId {
    /// A fresh random id. Random from the first digit, so short prefixes are unique
    /// (a time-ordered UUIDv7 would share its first 8 digits with every commit of a minute).
    pub fn generate() -> Self {
        Self(basin_core::ids::random())
    }

    pub fn from_string(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The short form shown to people, like git's abbreviated hashes.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A dotted name in the catalog: `ns` for a namespace, `ns.table` for a table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Key(String);

impl Key {
    /// Parses and validates a dotted key (`tpch`, `tpch.lineitem`).
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() || s.split('.').any(|part| !valid_identifier(part)) {
            return Err(Error::invalid(format!(
                "`{s}` is not a valid name: use letters, digits and `_`, parts separated by `.`"
            ))
            .with_hint("names look like `sales` (a namespace) or `sales.orders` (a table)"));
        }
        Ok(Self(s.to_string()))
    }

    /// A table key: a namespace and a table name.
    pub fn table(s: &str) -> Result<Self> {
        let key = Self::parse(s)?;
        if key.parts().count() < 2 {
            return Err(
                Error::invalid(format!("`{s}` names no namespace")).with_hint(format!(
                    "write the table as NAMESPACE.TABLE, e.g. `default.{s}`"
                )),
            );
        }
        Ok(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// The namespace part of a table key (all but the last part).
    pub fn namespace(&self) -> Option<Key> {
        self.0.rsplit_once('.').map(|(ns, _)| Key(ns.to_string()))
    }

    /// The last part: the table's own name.
    pub fn name(&self) -> &str {
        self.0.rsplit_once('.').map_or(&self.0, |(_, n)| n)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a key points at in one commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Namespace {
        #[serde(default)]
        properties: BTreeMap<String, String>,
    },
    /// An Iceberg table: the location of its current `metadata.json` on this commit.
    Table { metadata_location: String },
}

impl Content {
    pub fn table(metadata_location: impl Into<String>) -> Self {
        Content::Table {
            metadata_location: metadata_location.into(),
        }
    }

    pub fn namespace() -> Self {
        Content::Namespace {
            properties: BTreeMap::new(),
        }
    }

    pub fn metadata_location(&self) -> Option<&str> {
        match self {
            Content::Table { metadata_location } => Some(metadata_location),
            Content::Namespace { .. } => None,
        }
    }

    pub fn is_table(&self) -> bool {
        matches!(self, Content::Table { .. })
    }
}

/// One change in a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    Put { key: Key, content: Content },
    Delete { key: Key },
}

impl Operation {
    pub fn key(&self) -> &Key {
        match self {
            Operation::Put { key, .. } | Operation::Delete { key } => key,
        }
    }
}

/// A commit: who changed which keys, when, and on top of what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub id: CommitId,
    pub parent: Option<CommitId>,
    /// The source head for a merge commit.
    pub merge_parent: Option<CommitId>,
    pub author: String,
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub operations: Vec<Operation>,
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefKind {
    Branch,
    Tag,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
        }
    }
}

/// A named pointer to a commit. Branches move by compare-and-swap; tags do not move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
    pub kind: RefKind,
    pub head: CommitId,
}

/// What a commit is asked to do: apply `operations` to `branch`, whose head the caller read
/// as `expected_head`. If the branch moved meanwhile, the store re-bases the commit onto the
/// new head when none of its keys changed since `expected_head`, and refuses it otherwise.
#[derive(Clone, Debug)]
pub struct CommitRequest {
    pub branch: String,
    pub expected_head: CommitId,
    pub operations: Vec<Operation>,
    pub author: String,
    pub message: String,
    pub merge_parent: Option<CommitId>,
    pub properties: BTreeMap<String, String>,
    /// Queued events whose output this commit stores: marked succeeded in the same
    /// transaction, and the commit is refused if one of them is in a commit already.
    pub events: Vec<String>,
    /// What clears it for a protected branch.
    pub clearance: Clearance,
}

/// The commit property naming the door a commit came through (`api`, `postgres`, ...).
pub const DOOR_PROPERTY: &str = "basin.door";

impl CommitRequest {
    pub fn new(
        branch: impl Into<String>,
        expected_head: CommitId,
        message: impl Into<String>,
    ) -> Self {
        // Who acts, as the door that took the request set it (crate::actor); without one the
        // catalog fills in its default author and the `local` door.
        let actor = crate::actor::current();
        let mut properties = BTreeMap::new();
        if let Some(actor) = &actor {
            properties.insert(DOOR_PROPERTY.to_string(), actor.door.to_string());
        }
        Self {
            branch: branch.into(),
            expected_head,
            operations: Vec::new(),
            author: actor
                .as_ref()
                .and_then(|a| a.principal.clone())
                .unwrap_or_default(),
            message: message.into(),
            merge_parent: None,
            properties,
            events: Vec::new(),
            clearance: match actor {
                Some(a) if a.bypass_protection => Clearance::Bypass,
                _ => Clearance::Direct,
            },
        }
    }

    pub fn cleared(mut self, clearance: Clearance) -> Self {
        // An admin's bypass stays a bypass, so the commit says so.
        if self.clearance != Clearance::Bypass {
            self.clearance = clearance;
        }
        self
    }

    pub fn with_operations(mut self, ops: impl IntoIterator<Item = Operation>) -> Self {
        self.operations.extend(ops);
        self
    }

    pub fn with_author(mut self, author: impl Into<String>) -> Self {
        self.author = author.into();
        self
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }
}
/// An access token for `basin serve`, as stored: never the secret, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    /// `reader`, `writer` or `admin`: with `grants`, the highest access they give.
    pub role: String,
    /// The token's own grants (`read:sales.*@main`, ...); empty: everything its role allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    /// Never sent anywhere; read back as empty.
    #[serde(skip_serializing, default)]
    pub hash: String,
    pub created_at_ms: i64,
}

/// A review being opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReview {
    pub source: String,
    pub target: String,
    pub author: String,
    pub title: String,
    pub created_at_ms: i64,
}

/// Where a review stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewState {
    Open,
    Merged,
    Closed,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Merged => "merged",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "open" => Ok(Self::Open),
            "merged" => Ok(Self::Merged),
            "closed" => Ok(Self::Closed),
            other => Err(Error::invalid(format!("`{other}` is not a review state"))
                .with_hint("use open, merged or closed")),
        }
    }
}

/// One principal's approval of a review's source at one head: a later change to the source
/// needs a new approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub principal: String,
    pub source_head: String,
    pub approved_at_ms: i64,
}

/// A review of merging `source` into `target`, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    pub id: i64,
    pub source: String,
    pub target: String,
    pub author: String,
    pub title: String,
    pub state: ReviewState,
    pub created_at_ms: i64,
    pub closed_at_ms: Option<i64>,
    pub closed_by: Option<String>,
    pub merged_commit: Option<String>,
    pub approvals: Vec<Approval>,
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its number (0 before it is recorded).
    pub id: i64,
    pub at_ms: i64,
    /// A token's name, a function (`function:NAME`), or the local user.
    pub principal: String,
    /// `api`, `console`, `iceberg-rest`, `postgres`, `function`, `local`.
    pub door: String,
    /// `commit`, `create branch`, `POST /api/v1/...`, `login`, ...
    pub action: String,
    /// What it acted on: a branch, a tag, a token (empty for a request).
    pub target: String,
    /// `ok`, `refused`, `failed`, or an HTTP status.
    pub outcome: String,
    /// A commit's message, a refusal's reason.
    pub detail: String,
}

/// Which audit entries to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub since_ms: Option<i64>,
    pub limit: usize,
}

/// Bytes of each field of an audit entry kept (its start, and `…`).
pub const AUDIT_FIELD_BYTES: usize = 512;

/// An audit entry's field: `text`, or its first [`AUDIT_FIELD_BYTES`] (whole characters) and
/// `…`. A refused request's path is a stranger's to choose, up to 64 KiB.
pub(crate) fn cut(text: &str) -> String {
    if text.len() <= AUDIT_FIELD_BYTES {
        return text.to_string();
    }
    let mut end = AUDIT_FIELD_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_field_keeps_its_start_in_whole_characters() {
        assert_eq!(cut("GET /api/v1/tables"), "GET /api/v1/tables");
        let long = format!("GET /{}", "é".repeat(AUDIT_FIELD_BYTES));
        let kept = cut(&long);
        assert!(kept.ends_with('…') && kept.len() <= AUDIT_FIELD_BYTES + '…'.len_utf8());
        assert!(long.starts_with(kept.trim_end_matches('…')));
    }
}
