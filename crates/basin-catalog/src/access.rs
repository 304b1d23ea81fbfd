//! The grants of the acting principal ([`crate::actor`]), applied by the catalog at every
//! read and commit: what it may not read is left out, what it may not write is refused.
//! Without grants on the actor (the local user, the server's own work) everything is allowed.

use std::collections::BTreeMap;
use std::sync::Arc;

use basin_core::{Error, ErrorKind, Result};

use crate::grants::Grants;
use crate::model::{Commit, Content, Key, Operation};

/// The refusal of a write the grants do not allow.
pub(crate) fn refused_write(principal: &str, key: &str, branch: &str) -> Error {
    Error::new(
        ErrorKind::Forbidden,
        format!("`{principal}` may not write `{key}` on branch `{branch}`"),
    )
    .with_hint(format!(
        "ask an admin for a grant (basin token create --grant write:{key}@{branch}, or [[grants]] in basin.toml)"
    ))
}

/// The acting principal's name and grants, if a door restricted it (`None`: everything, as
/// for the local user and the server's own work).
pub(crate) fn acting() -> Option<(String, Arc<Grants>)> {
    let actor = crate::actor::current()?;
    let grants = actor.grants?;
    Some((actor.principal.unwrap_or_default(), grants))
}

/// `contents` without what the acting principal may not read.
pub(crate) fn visible_contents(
    contents: BTreeMap<Key, Content>,
    branch: &str,
) -> BTreeMap<Key, Content> {
    let Some((_, grants)) = acting() else {
        return contents;
    };
    contents
        .into_iter()
        .filter(|(key, content)| grants.may_read(key.as_str(), !content.is_table(), branch))
        .collect()
}

/// Whether the acting principal may read `key` (holding `content`) on `branch`.
pub(crate) fn may_read(key: &Key, content: &Content, branch: &str) -> bool {
    acting().is_none_or(|(_, grants)| grants.may_read(key.as_str(), !content.is_table(), branch))
}

/// `commits` as the acting principal may see them: only the keys it may read in each, and
/// a commit that changed none of them without its message.
pub(crate) fn redact_log(commits: &mut [Commit], branch: &str) {
    let Some((_, grants)) = acting() else {
        return;
    };
    for commit in commits {
        let before = commit.operations.len();
        commit.operations.retain(|op| {
            let is_namespace = matches!(
                op,
                Operation::Put {
                    content: Content::Namespace { .. },
                    ..
                }
            ) || op.key().namespace().is_none();
            grants.may_read(op.key().as_str(), is_namespace, branch)
        });
        if before > 0 && commit.operations.is_empty() {
            commit.message = "(a change to tables you may not read)".into();
            commit.properties.clear();
        }
    }
}

/// Refuses creating, moving or deleting the branch or tag `name` without a write grant on it.
pub(crate) fn check_ref_write(name: &str) -> Result<()> {
    match acting() {
        Some((principal, grants)) if !grants.may_write_branch(name) => Err(Error::new(
            ErrorKind::Forbidden,
            format!("`{principal}` may not create or delete `{name}`"),
        )
        .with_hint(format!(
            "a write grant on branch `{name}` allows it (basin token create --grant write:TABLES@{name})"
        ))),
        _ => Ok(()),
    }
}

/// Whether the acting principal may see the branch or tag `name`.
pub(crate) fn may_see_ref(name: &str) -> bool {
    acting().is_none_or(|(_, grants)| grants.may_see_ref(name))
}
