//! Carrying out a plan. The catalog's objects (namespaces, tables) change in one commit on
//! the branch, so a failure there leaves everything as it was. Refs, tokens and functions
//! follow, each checked by the plan before anything was applied; should one still fail, the
//! error says what was applied before it.

use std::path::Path;

use basin_catalog::CommitRequest;
use basin_core::{Error, Result};

use super::plan::{Kind, NewToken, Plan};
use super::spec::{Declaration, TokenDecl};
use crate::{Lakehouse, Role};

/// The commit property naming the declaration an apply came from.
pub const DECLARED_PROPERTY: &str = "basin.declared";

pub(crate) async fn apply(
    lake: &Lakehouse,
    declaration: &Declaration,
    mut plan: Plan,
    allow_replace: bool,
) -> Result<Plan> {
    refuse_replaces(&plan, allow_replace)?;
    let work = std::mem::take(&mut plan.work);
    let mut done: Vec<String> = Vec::new();
    if !work.operations.is_empty() || !work.tables.is_empty() {
        let head = match work.head.clone() {
            Some(head) => head,
            None => lake.resolve(Some(&plan.branch)).await?.commit,
        };
        let request = CommitRequest::new(&plan.branch, head, commit_message(&plan))
            .with_operations(work.operations.clone())
            .with_property(DECLARED_PROPERTY, &plan.file);
        let commit = if work.tables.is_empty() {
            lake.catalog().commit(request).await?.id
        } else {
            lake.iceberg_tables()
                .commit_updates(&work.tables, request)
                .await?;
            lake.resolve(Some(&plan.branch)).await?.commit
        };
        done.push(format!("commit {} on `{}`", commit.short(), plan.branch));
        plan.commit = Some(commit.as_str().to_string());
    }
    let after = |e: Error, done: &[String]| {
        let mut e = e;
        if !done.is_empty() {
            e.message = format!("{} (applied before it: {})", e.message, done.join(", "));
        }
        e
    };
    let refs = lake.refs();
    for name in &work.tags_dropped {
        refs.delete_tag(name).await.map_err(|e| after(e, &done))?;
        done.push(format!("tag {name} dropped"));
    }
    for (name, at) in &work.tags_created {
        refs.create_tag(name, Some(at))
            .await
            .map_err(|e| after(e, &done))?;
        done.push(format!("tag {name}"));
    }
    for (name, from) in &work.branches_created {
        refs.create_branch(name, Some(from))
            .await
            .map_err(|e| after(e, &done))?;
        done.push(format!("branch {name}"));
    }
    for name in &work.branches_dropped {
        refs.delete_branch(name)
            .await
            .map_err(|e| after(e, &done))?;
        done.push(format!("branch {name} dropped"));
    }
    for id in &work.tokens_revoked {
        lake.tokens()
            .revoke(id)
            .await
            .map_err(|e| after(e, &done))?;
        done.push(format!("token {id} revoked"));
    }
    for (name, declared) in &work.tokens_created {
        let token = create_token(lake, name, declared)
            .await
            .map_err(|e| after(e, &done))?;
        done.push(format!("token {name}"));
        plan.tokens.push(token);
    }
    if let Some(dir) = &work.deploy
        && plan.changes.iter().any(|c| c.kind == Kind::Function)
    {
        lake.triggers()
            .deploy(dir, true)
            .await
            .map_err(|e| after(e, &done))?;
    }
    let now = super::planner::plan(lake, declaration, Some(&plan.branch)).await?;
    super::state::write(lake, &plan.branch, &now.work.observed).await?;
    plan.applied = true;
    Ok(plan)
}

fn refuse_replaces(plan: &Plan, allow_replace: bool) -> Result<()> {
    let replaces = plan.replaces();
    if replaces.is_empty() || allow_replace {
        return Ok(());
    }
    let list: Vec<String> = replaces
        .iter()
        .map(|c| {
            let why = c.reasons.first().cloned().unwrap_or_default();
            match &c.loses {
                Some(loses) => format!("{} {} ({why}; loses {loses})", c.kind.as_str(), c.name),
                None => format!("{} {} ({why})", c.kind.as_str(), c.name),
            }
        })
        .collect();
    Err(Error::invalid(format!(
        "the plan replaces {}; nothing was applied",
        list.join("; ")
    ))
    .with_hint(
        "check what it loses, then run `basin apply --allow-replace`; or declare a change \
         Iceberg makes in place (a new optional column, a wider type)",
    ))
}

async fn create_token(lake: &Lakehouse, name: &str, declared: &TokenDecl) -> Result<NewToken> {
    let role = declared.role.as_deref().map(Role::parse).transpose()?;
    let grants = declared
        .grants
        .iter()
        .map(|g| basin_catalog::Grant::parse(g))
        .collect::<Result<Vec<_>>>()?;
    let (record, secret) = lake.tokens().create(name, role, &grants).await?;
    Ok(NewToken {
        name: name.to_string(),
        id: record.id,
        secret,
    })
}

/// `apply basin.toml: + namespace reports, ~ table sales.orders`.
fn commit_message(plan: &Plan) -> String {
    let catalog: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.kind, Kind::Namespace | Kind::Table))
        .map(|c| format!("{} {} {}", c.action.sign(), c.kind.as_str(), c.name))
        .collect();
    let file = Path::new(&plan.file)
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    format!("apply {file}: {}", catalog.join(", "))
}
