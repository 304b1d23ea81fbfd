//! The rules a commit must pass, the same for every store: the ref it names must be a
//! branch, a stale commit re-bases only when none of its keys changed, and its operations
//! must fit the tree they apply to. Each store says how it reads a tree ([`Tree`]); the
//! rules are written once, here.

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::model::{CommitId, Content, Key, Operation, Ref, RefKind};
use basin_core::{Error, ErrorKind, Result};

/// The message of every lakehouse's first commit.
pub(crate) const ROOT_MESSAGE: &str = "initialize lakehouse";

/// Reads the tree of a commit, inside the transaction of the commit being checked.
#[async_trait]
pub(crate) trait Tree {
    /// What `key` points at in commit `at`.
    async fn content(&mut self, at: &CommitId, key: &Key) -> Result<Option<Content>>;
    /// The keys inside `namespace` at `at`: those between the two bounds of
    /// [`children_range`], exclusive.
    async fn children(&mut self, at: &CommitId, namespace: &Key) -> Result<Vec<String>>;
}

/// The keys inside `namespace` sort strictly between these two (byte order).
pub(crate) fn children_range(namespace: &Key) -> (String, String) {
    // '/' sorts right after '.'.
    (format!("{namespace}."), format!("{namespace}/"))
}

/// The head a commit to `branch` applies to, given the ref of that name (if any).
pub(crate) fn branch_head(branch: &str, found: Option<Ref>) -> Result<CommitId> {
    match found {
        Some(Ref {
            kind: RefKind::Branch,
            head,
            ..
        }) => Ok(head),
        Some(Ref {
            kind: RefKind::Tag, ..
        }) => Err(
            Error::invalid(format!("`{branch}` is a tag; tags do not move"))
                .with_hint("commit to a branch, e.g. `--branch main`"),
        ),
        None => Err(Error::not_found(format!(
            "branch `{branch}` does not exist"
        ))),
    }
}

/// A commit read at `expected` lands on `head` only if no key it touches changed since.
pub(crate) async fn check_rebase(
    tree: &mut (impl Tree + Send),
    branch: &str,
    expected: &CommitId,
    head: &CommitId,
    ops: &[Operation],
) -> Result<()> {
    if head == expected {
        return Ok(());
    }
    let mut conflicts = Vec::new();
    for op in ops {
        if tree.content(expected, op.key()).await? != tree.content(head, op.key()).await? {
            conflicts.push(op.key().to_string());
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Conflict,
        format!(
            "`{}` changed on branch `{branch}` since this change began",
            conflicts.join("`, `")
        ),
    )
    .with_hint("re-run the command; it will start from the new head"))
}

/// Checks the operations against the tree they will apply to: one change per key, tables
/// need their namespace, deletes need their key, and a namespace must be empty to go.
pub(crate) async fn validate_operations(
    tree: &mut (impl Tree + Send),
    head: &CommitId,
    ops: &[Operation],
) -> Result<()> {
    let mut seen = BTreeSet::new();
    for op in ops {
        if !seen.insert(op.key().clone()) {
            return Err(Error::invalid(format!(
                "one commit changes `{}` twice",
                op.key()
            )));
        }
    }
    for op in ops {
        match op {
            Operation::Put { key, content } => {
                if let Some(ns) = key.namespace() {
                    let in_commit = ops.iter().any(|o| {
                        matches!(o, Operation::Put { key, content: Content::Namespace { .. } } if *key == ns)
                    });
                    let exists = matches!(
                        tree.content(head, &ns).await?,
                        Some(Content::Namespace { .. })
                    );
                    if !in_commit && !exists {
                        return Err(Error::not_found(format!("namespace `{ns}` does not exist"))
                            .with_hint(format!("create it with `basin namespace create {ns}`")));
                    }
                }
                if let Some(old) = tree.content(head, key).await?
                    && old.is_table() != content.is_table()
                {
                    let kind = if old.is_table() { "table" } else { "namespace" };
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!("`{key}` already exists as a {kind}"),
                    ));
                }
            }
            Operation::Delete { key } => match tree.content(head, key).await? {
                None => return Err(Error::not_found(format!("`{key}` does not exist"))),
                Some(Content::Namespace { .. }) => {
                    // Every child must be deleted in the same commit.
                    for child in tree.children(head, key).await? {
                        let deleted = ops.iter().any(
                            |o| matches!(o, Operation::Delete { key } if key.as_str() == child),
                        );
                        if !deleted {
                            return Err(Error::invalid(format!(
                                "namespace `{key}` is not empty: `{child}` is in it"
                            ))
                            .with_hint(format!(
                                "drop `{child}` first with `basin table rm {child}`"
                            )));
                        }
                    }
                }
                Some(Content::Table { .. }) => {}
            },
        }
    }
    Ok(())
}

/// Why a commit could not consume event `id`: there is no such event, or a commit
/// (`stored_by`) stored its output already.
pub(crate) fn unconsumable_event(id: &str, stored_by: Option<Option<String>>) -> Error {
    match stored_by {
        None => Error::not_found(format!("no event `{id}`")),
        Some(commit) => Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "event {id} is already stored by commit {}",
                commit.unwrap_or_default()
            ),
        ),
    }
}
