//! The versioned catalog's operations: resolving refs, branching, tagging, diffing and
//! planning merges. Persistence is the [`Store`]'s; this layer adds the rules users see.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::access;
use crate::actor::LOCAL_DOOR;
use crate::model::{Commit, CommitId, CommitRequest, Content, Key, Operation, Ref, RefKind, cut};
use crate::protection::{Clearance, Protection};
use crate::store::Store;
use basin_core::{Error, ErrorKind, Result, suggest};

/// The branch every lakehouse starts with; it cannot be deleted.
pub const MAIN: &str = "main";

/// A ref as the user wrote it, resolved to a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// What the user wrote: `main`, `v1`, `main@1a2b3c`.
    pub spec: String,
    /// The branch, when the spec names a branch's head (so it can be written to).
    pub branch: Option<String>,
    pub commit: CommitId,
}

impl Resolved {
    /// The branch to write to, or an error saying why this ref is read-only.
    pub fn writable_branch(&self) -> Result<&str> {
        self.branch.as_deref().ok_or_else(|| {
            Error::invalid(format!("`{}` is not a branch head, so it cannot be written to", self.spec))
                .with_hint("write to a branch (`--branch main`), or create one from this ref with `basin branch create NAME --from REF`")
        })
    }
}

/// How a key differs between two commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Changed,
    Dropped,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffEntry {
    pub key: Key,
    pub change: Change,
    pub from: Option<Content>,
    pub to: Option<Content>,
}

/// A key changed differently on both sides of a merge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub key: Key,
    pub base: Option<Content>,
    pub source: Option<Content>,
    pub target: Option<Content>,
}

/// What merging `source` into `target` would do, computed three-way from the merge base.
#[derive(Clone, Debug, Serialize)]
pub struct MergePlan {
    pub source: Resolved,
    pub target: String,
    pub target_head: CommitId,
    pub base: CommitId,
    /// Changes from the source that apply cleanly, each with how it changes the target.
    pub operations: Vec<(Operation, Change)>,
    /// Keys changed on both sides; the caller may resolve some (appends to one table).
    pub conflicts: Vec<Conflict>,
}

impl MergePlan {
    pub fn is_noop(&self) -> bool {
        self.operations.is_empty() && self.conflicts.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct Catalog {
    store: Arc<dyn Store>,
    protection: Arc<Protection>,
    /// The author of a commit whose request names none (no door set an [`actor`]).
    default_author: Arc<str>,
}

/// The branch a read at `at` is on, for grants' branch patterns: the branch, or the tag (or
/// ref) named before `@`; `""` for a bare commit, which only `*` matches.
fn read_branch(at: &Resolved) -> String {
    at.branch
        .clone()
        .unwrap_or_else(|| at.spec.split('@').next().unwrap_or_default().to_string())
}

/// Checks a branch or tag name: git's rules, kept simple.
pub fn validate_ref_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.contains("..")
        && !name.contains("//")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(
            Error::invalid(format!("`{name}` is not a valid branch or tag name")).with_hint(
                "use letters, digits, `_`, `-`, `.` and `/` (e.g. `dev`, `run/42`, `v1.0`)",
            ),
        )
    }
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            protection: Arc::default(),
            default_author: Arc::from("basin"),
        }
    }

    /// The same catalog with these protected branches.
    pub fn with_protection(mut self, protection: Protection) -> Self {
        self.protection = Arc::new(protection);
        self
    }

    /// The same catalog with `author` for commits no door names an author for.
    pub fn with_default_author(mut self, author: &str) -> Self {
        self.default_author = Arc::from(author);
        self
    }

    pub fn protection(&self) -> &Protection {
        &self.protection
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Resolves `main`, a tag, `REF@COMMIT_PREFIX` or `@COMMIT_PREFIX` to a commit.
    pub async fn resolve(&self, spec: &str) -> Result<Resolved> {
        let (name, at) = match spec.split_once('@') {
            Some((name, at)) => (name, Some(at)),
            None => (spec, None),
        };
        let base = if name.is_empty() && at.is_some() {
            None
        } else {
            Some(self.get_ref(name).await?)
        };
        match (base, at) {
            (Some(r), None) => Ok(Resolved {
                spec: spec.to_string(),
                branch: (r.kind == RefKind::Branch).then(|| r.name.clone()),
                commit: r.head,
            }),
            (base, Some(prefix)) => {
                let commit = self.commit_by_prefix(prefix).await?;
                if let Some(r) = base
                    && !self.store.is_ancestor(&commit, &r.head).await?
                {
                    return Err(Error::not_found(format!(
                        "commit `{prefix}` is not in the history of `{}`",
                        r.name
                    ))
                    .with_hint(format!(
                        "see the commits of `{0}` with `basin log {0}`",
                        r.name
                    )));
                }
                Ok(Resolved {
                    spec: spec.to_string(),
                    branch: None,
                    commit,
                })
            }
            (None, None) => unreachable!("an empty name is only allowed before `@`"),
        }
    }

    /// A branch or tag by exact name, with "did you mean" and the list of branches if absent.
    pub async fn get_ref(&self, name: &str) -> Result<Ref> {
        if let Some(r) = self.store.get_ref(name).await?
            && access::may_see_ref(name)
        {
            return Ok(r);
        }
        let refs = self.list_refs().await?;
        let mut hint = match suggest(name, refs.iter().map(|r| r.name.as_str())) {
            Some(s) => format!("did you mean `{s}`? "),
            None => String::new(),
        };
        let branches: Vec<&str> = refs
            .iter()
            .filter(|r| r.kind == RefKind::Branch)
            .map(|r| r.name.as_str())
            .collect();
        hint.push_str(&format!("branches: {}", branches.join(", ")));
        let tags: Vec<&str> = refs
            .iter()
            .filter(|r| r.kind == RefKind::Tag)
            .map(|r| r.name.as_str())
            .collect();
        if !tags.is_empty() {
            hint.push_str(&format!("; tags: {}", tags.join(", ")));
        }
        Err(Error::not_found(format!("no branch or tag named `{name}`")).with_hint(hint))
    }

    async fn commit_by_prefix(&self, prefix: &str) -> Result<CommitId> {
        if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!("`{prefix}` is not a commit id"))
                .with_hint("give at least 4 hex digits of a commit id, as shown by `basin log`"));
        }
        let found = self
            .store
            .commits_with_prefix(&prefix.to_ascii_lowercase(), 2)
            .await?;
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(
                Error::not_found(format!("no commit starts with `{prefix}`"))
                    .with_hint("list commits with `basin log`"),
            ),
            _ => Err(
                Error::invalid(format!("commit prefix `{prefix}` is ambiguous"))
                    .with_hint("give more digits of the commit id"),
            ),
        }
    }

    /// Branches and tags (those the acting principal's grants reach).
    pub async fn list_refs(&self) -> Result<Vec<Ref>> {
        let mut refs = self.store.list_refs().await?;
        refs.retain(|r| access::may_see_ref(&r.name));
        Ok(refs)
    }

    /// Creates a branch at `from`'s commit. Copies nothing: one row, whatever the table count.
    pub async fn create_branch(&self, name: &str, from: &Resolved) -> Result<Ref> {
        let result = async {
            validate_ref_name(name)?;
            access::check_ref_write(name)?;
            self.store
                .create_ref(name, RefKind::Branch, &from.commit)
                .await
        }
        .await;
        self.audited("create branch", name, &from.spec, result)
            .await
    }

    pub async fn create_tag(&self, name: &str, at: &Resolved) -> Result<Ref> {
        let result = async {
            validate_ref_name(name)?;
            access::check_ref_write(name)?;
            self.store.create_ref(name, RefKind::Tag, &at.commit).await
        }
        .await;
        self.audited("create tag", name, &at.spec, result).await
    }

    /// Deletes a branch; `main` and the branch the user is on are refused.
    pub async fn delete_branch(&self, name: &str, current: Option<&str>) -> Result<()> {
        let result = self.delete_branch_checked(name, current).await;
        self.audited("delete branch", name, "", result).await
    }

    /// Records a ref change (or its refusal) in the audit log; not merge checks' scratch refs.
    async fn audited<T>(
        &self,
        action: &str,
        name: &str,
        detail: &str,
        result: Result<T>,
    ) -> Result<T> {
        if !name.starts_with(crate::protection::SCRATCH_PREFIX) {
            match &result {
                Ok(_) => self.audit(action, name, "ok", detail).await,
                Err(e) if e.kind() == ErrorKind::Forbidden => {
                    self.audit(action, name, "refused", &e.to_string()).await;
                }
                Err(_) => {}
            }
        }
        result
    }

    async fn delete_branch_checked(&self, name: &str, current: Option<&str>) -> Result<()> {
        let r = self.get_ref(name).await?;
        if r.kind != RefKind::Branch {
            return Err(Error::invalid(format!("`{name}` is a tag, not a branch"))
                .with_hint(format!("use `basin tag rm {name}`")));
        }
        if name == MAIN {
            return Err(Error::invalid("`main` cannot be deleted")
                .with_hint("every lakehouse keeps its `main` branch"));
        }
        if let Some(rule) = self.protection.rule(name) {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!("branch `{name}` is protected and cannot be deleted"),
            )
            .with_hint(format!(
                "remove its rule (pattern = \"{}\") from [[branches.protect]] in basin.toml first",
                rule.pattern
            )));
        }
        access::check_ref_write(name)?;
        if current == Some(name) {
            return Err(
                Error::invalid(format!("`{name}` is the branch you are on")).with_hint(format!(
                    "switch first with `basin checkout main`, then delete `{name}`"
                )),
            );
        }
        self.store.delete_ref(name).await
    }

    pub async fn delete_tag(&self, name: &str) -> Result<()> {
        let result = async {
            let r = self.get_ref(name).await?;
            access::check_ref_write(name)?;
            if r.kind != RefKind::Tag {
                return Err(Error::invalid(format!("`{name}` is a branch, not a tag"))
                    .with_hint(format!("use `basin branch rm {name}`")));
            }
            self.store.delete_ref(name).await
        }
        .await;
        self.audited("delete tag", name, "", result).await
    }

    /// Commits of `from`, newest first. A principal with grants sees only the keys it may
    /// read in each, and a commit that changed none of them without its message.
    pub async fn log(&self, from: &Resolved, limit: usize) -> Result<Vec<Commit>> {
        let mut commits = self.store.log(&from.commit, limit).await?;
        access::redact_log(&mut commits, &read_branch(from));
        Ok(commits)
    }

    /// What `at` holds: every namespace and table the acting principal may read.
    pub async fn contents(&self, at: &Resolved) -> Result<BTreeMap<Key, Content>> {
        Ok(access::visible_contents(
            self.store.contents(&at.commit).await?,
            &read_branch(at),
        ))
    }

    /// What `key` holds at `at`; `None` also when the acting principal may not read it.
    pub async fn content(&self, at: &Resolved, key: &Key) -> Result<Option<Content>> {
        Ok(self
            .store
            .content(&at.commit, key)
            .await?
            .filter(|content| access::may_read(key, content, &read_branch(at))))
    }

    /// The table's metadata location at `at`, or `NotFound` with "did you mean".
    pub async fn table_location(&self, at: &Resolved, key: &Key) -> Result<String> {
        match self.content(at, key).await? {
            Some(Content::Table { metadata_location }) => Ok(metadata_location),
            _ => {
                let contents = self.contents(at).await?;
                let tables: Vec<&str> = contents
                    .iter()
                    .filter(|(_, c)| c.is_table())
                    .map(|(k, _)| k.as_str())
                    .collect();
                let hint = match suggest(key.as_str(), tables.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if tables.is_empty() => format!(
                        "`{}` has no tables yet; import one with `basin import`",
                        at.spec
                    ),
                    None => format!("tables on `{}`: {}", at.spec, tables.join(", ")),
                };
                Err(
                    Error::not_found(format!("table `{key}` does not exist on `{}`", at.spec))
                        .with_hint(hint),
                )
            }
        }
    }

    /// Commits `request`; see [`CommitRequest`] for the compare-and-swap and re-base rule.
    /// A protected branch takes only commits a merge or maintenance cleared
    /// ([`crate::protection`]).
    ///
    /// The audit log records each commit and each refusal (not a trial on a scratch branch,
    /// nor a conflict, which its writer retries).
    pub async fn commit(&self, mut request: CommitRequest) -> Result<Commit> {
        let (branch, clearance) = (request.branch.clone(), request.clearance);
        let mut detail = request.message.clone();
        if clearance == Clearance::Bypass {
            detail.push_str(" (bypassing branch protection)");
        }
        let result = async {
            self.protection.admit(&request.branch, request.clearance)?;
            self.check_grants(&request).await?;
            self.sign(&mut request);
            self.store.commit(request).await
        }
        .await;
        match &result {
            _ if clearance == Clearance::Trial => {}
            Ok(commit) => {
                let detail = format!("{} {detail}", commit.id.short());
                self.audit("commit", &branch, "ok", &detail).await;
            }
            Err(e) if e.kind() == ErrorKind::Forbidden => {
                self.audit("commit", &branch, "refused", &e.to_string())
                    .await;
            }
            Err(_) => {}
        }
        result
    }

    /// Records in the audit log that the acting principal (or this catalog's default author,
    /// through the `local` door) did `action` on `target`, and how it ended. A failure to
    /// record is logged, not returned: the change itself is done (or refused) already.
    pub async fn audit(&self, action: &str, target: &str, outcome: &str, detail: &str) {
        let entry = crate::AuditEntry {
            id: 0,
            at_ms: basin_core::time::now_ms(),
            principal: cut(&self.principal()),
            door: crate::actor::current()
                .map_or(LOCAL_DOOR, |a| a.door)
                .to_string(),
            action: cut(action),
            target: cut(target),
            outcome: cut(outcome),
            detail: cut(detail),
        };
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::warn!("cannot record `{action} {target}` in the audit log: {e}");
        }
    }

    /// Refuses (and audits) `request` if its branch is protected and nothing cleared it.
    pub async fn admit(&self, request: &CommitRequest) -> Result<()> {
        let admitted = self.protection.admit(&request.branch, request.clearance);
        if let Err(e) = &admitted {
            self.audit("commit", &request.branch, "refused", &e.to_string())
                .await;
        }
        admitted
    }

    /// Refuses a commit touching a key the acting principal may not write on its branch.
    async fn check_grants(&self, request: &CommitRequest) -> Result<()> {
        let Some((principal, grants)) = access::acting() else {
            return Ok(());
        };
        for op in &request.operations {
            let is_namespace = match op {
                Operation::Put { content, .. } => !content.is_table(),
                Operation::Delete { key } => !self
                    .store
                    .content(&request.expected_head, key)
                    .await?
                    .is_some_and(|c| c.is_table()),
            };
            if !grants.may_write(op.key().as_str(), is_namespace, &request.branch) {
                return Err(access::refused_write(
                    &principal,
                    op.key().as_str(),
                    &request.branch,
                ));
            }
        }
        Ok(())
    }

    /// Who acts: the principal the door named, or the default author (the local user).
    pub fn principal(&self) -> String {
        crate::actor::current()
            .and_then(|a| a.principal)
            .unwrap_or_else(|| self.default_author.to_string())
    }

    /// Fills in the author and door of a request no door named them for: this catalog's
    /// default author, through the `local` door.
    pub fn sign(&self, request: &mut CommitRequest) {
        if request.author.is_empty() {
            request.author = self.default_author.to_string();
        }
        request
            .properties
            .entry(crate::model::DOOR_PROPERTY.to_string())
            .or_insert_with(|| LOCAL_DOOR.to_string());
    }

    /// Keys added, changed and dropped going from `a` to `b` (those the acting principal may
    /// read on each side).
    pub async fn diff(&self, a: &Resolved, b: &Resolved) -> Result<Vec<DiffEntry>> {
        let (from, to) = (self.contents(a).await?, self.contents(b).await?);
        Ok(diff_maps(&from, &to))
    }

    /// Plans merging `source` into branch `target`, three-way from their merge base.
    pub async fn plan_merge(&self, source: &Resolved, target: &str) -> Result<MergePlan> {
        let target_ref = self.get_ref(target).await?;
        if target_ref.kind != RefKind::Branch {
            return Err(Error::invalid(format!("cannot merge into tag `{target}`"))
                .with_hint("merge into a branch"));
        }
        let base = self
            .store
            .merge_base(&source.commit, &target_ref.head)
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("`{}` and `{target}` share no history", source.spec),
                )
            })?;
        let (base_map, source_map, target_map) = (
            self.store.contents(&base).await?,
            self.store.contents(&source.commit).await?,
            self.store.contents(&target_ref.head).await?,
        );
        let mut operations = Vec::new();
        let mut conflicts = Vec::new();
        let keys: BTreeSet<&Key> = base_map
            .keys()
            .chain(source_map.keys())
            .chain(target_map.keys())
            .collect();
        for key in keys {
            let (b, s, t) = (base_map.get(key), source_map.get(key), target_map.get(key));
            if s == b || s == t {
                continue; // unchanged on the source, or both sides made the same change
            }
            if t == b {
                operations.push(match (s, b) {
                    (Some(content), base) => (
                        Operation::Put {
                            key: key.clone(),
                            content: content.clone(),
                        },
                        if base.is_some() {
                            Change::Changed
                        } else {
                            Change::Added
                        },
                    ),
                    (None, _) => (Operation::Delete { key: key.clone() }, Change::Dropped),
                });
            } else {
                conflicts.push(Conflict {
                    key: key.clone(),
                    base: b.cloned(),
                    source: s.cloned(),
                    target: t.cloned(),
                });
            }
        }
        Ok(MergePlan {
            source: source.clone(),
            target: target.to_string(),
            target_head: target_ref.head,
            base,
            operations,
            conflicts,
        })
    }
}

pub fn diff_maps(from: &BTreeMap<Key, Content>, to: &BTreeMap<Key, Content>) -> Vec<DiffEntry> {
    let keys: BTreeSet<&Key> = from.keys().chain(to.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (a, b) = (from.get(key), to.get(key));
            let change = match (a, b) {
                (None, Some(_)) => Change::Added,
                (Some(_), None) => Change::Dropped,
                (Some(x), Some(y)) if x != y => Change::Changed,
                _ => return None,
            };
            Some(DiffEntry {
                key: key.clone(),
                change,
                from: a.cloned(),
                to: b.cloned(),
            })
        })
        .collect()
}
