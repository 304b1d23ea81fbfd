//! The objects outside a branch's commit: branches and tags, tokens, and the triggered
//! functions of `[deploy] functions` (today's `basin deploy`).

use basin_catalog::{Grant, RefKind, TokenRecord, validate_ref_name};
use basin_core::{Error, Result};
use serde_json::{Value, json};

use super::plan::{Action, Kind};
use super::planner::Planner;
use super::spec::in_section;
use super::spec::{Declaration, TokenDecl};
use crate::Role;

impl Planner<'_> {
    pub(super) async fn refs(&mut self, declaration: &Declaration) -> Result<()> {
        let refs = self.lake.catalog().list_refs().await?;
        let find = |name: &str| refs.iter().find(|r| r.name == name);
        for (name, declared) in &declaration.branch_decls {
            validate_ref_name(name).map_err(|e| in_section(e, "branches", name))?;
            let existing = find(name);
            if existing.is_some_and(|r| r.kind == RefKind::Tag) {
                return Err(Error::invalid(format!(
                    "[branches.{name}]: `{name}` is a tag"
                )));
            }
            let drift = self.observe(Kind::Branch, name, existing.map(|_| json!(true)), |_, _| {
                Vec::new()
            });
            if existing.is_some() {
                self.change(Kind::Branch, name, None, Vec::new(), drift);
                continue;
            }
            let from = declared.from.clone().unwrap_or_else(|| self.branch.clone());
            self.lake
                .catalog()
                .resolve(&from)
                .await
                .map_err(|e| in_section(e, "branches", name))?;
            self.work
                .branches_created
                .push((name.clone(), from.clone()));
            let reasons = vec![format!("from {from}")];
            self.change(Kind::Branch, name, Some(Action::Create), reasons, drift);
        }
        for (name, declared) in &declaration.tags {
            validate_ref_name(name).map_err(|e| in_section(e, "tags", name))?;
            let existing = find(name);
            if existing.is_some_and(|r| r.kind == RefKind::Branch) {
                return Err(Error::invalid(format!(
                    "[tags.{name}]: `{name}` is a branch"
                )));
            }
            let head = existing.map(|r| json!(r.head.as_str()));
            let drift = self.observe(Kind::Tag, name, head, |then, now| {
                (then != now)
                    .then(|| "its commit".to_string())
                    .into_iter()
                    .collect()
            });
            // A ref's name is read when the tag is made; a commit is also checked after.
            let names_ref = refs.iter().any(|r| r.name == declared.at);
            // A ref, `REF@COMMIT`, or a bare commit id (as `basin export` writes it).
            let spec = if names_ref || declared.at.contains('@') {
                declared.at.clone()
            } else {
                format!("@{}", declared.at)
            };
            let at = self
                .lake
                .catalog()
                .resolve(&spec)
                .await
                .map_err(|e| in_section(e, "tags", name))?;
            let action = match existing {
                None => Some(Action::Create),
                Some(tag) if !names_ref && tag.head != at.commit => Some(Action::Replace),
                Some(_) => None,
            };
            let mut reasons = vec![format!("at {} ({})", declared.at, at.commit.short())];
            if let Some(tag) = existing.filter(|_| action == Some(Action::Replace)) {
                reasons = vec![format!("at {} -> {}", tag.head.short(), at.commit.short())];
                self.work.tags_dropped.push(name.clone());
            }
            if action.is_some() {
                // A ref's name is read when the tag is made, after the apply's own commit.
                let at = if names_ref {
                    spec
                } else {
                    format!("@{}", at.commit.as_str())
                };
                self.work.tags_created.push((name.clone(), at));
            }
            self.change(Kind::Tag, name, action, reasons, drift);
            if action == Some(Action::Replace) {
                self.loses("the tag's old commit, under this name".to_string());
            }
        }
        for (kind, names) in [
            (
                Kind::Branch,
                self.undeclared(Kind::Branch, |n| declaration.branch_decls.contains_key(n)),
            ),
            (
                Kind::Tag,
                self.undeclared(Kind::Tag, |n| declaration.tags.contains_key(n)),
            ),
        ] {
            for name in names {
                let Some(existing) = find(&name) else {
                    continue;
                };
                if name == self.branch || name == "main" {
                    return Err(Error::invalid(format!(
                        "branch `{name}` is no longer declared, and `basin apply` never drops `main` or the branch it applies to"
                    ))
                    .with_hint(format!("declare [branches.{name}] again")));
                }
                let lost = match existing.kind {
                    RefKind::Branch => {
                        self.work.branches_dropped.push(name.clone());
                        "the branch: commits on no other ref go with it"
                    }
                    RefKind::Tag => {
                        self.work.tags_dropped.push(name.clone());
                        "the tag (its commit stays on the refs that hold it)"
                    }
                };
                self.change(kind, &name, Some(Action::Destroy), Vec::new(), None);
                self.loses(lost.to_string());
            }
        }
        Ok(())
    }

    pub(super) async fn tokens(&mut self, declaration: &Declaration) -> Result<()> {
        let tokens = self.lake.tokens().list().await?;
        let find = |name: &str| tokens.iter().find(|t| t.name == name);
        for (name, declared) in &declaration.tokens {
            let wanted = token_access(declared).map_err(|e| in_section(e, "tokens", name))?;
            let existing = find(name);
            let drift = self.observe(Kind::Token, name, existing.map(token_json), |then, now| {
                (then != now)
                    .then(|| "its secret or access".to_string())
                    .into_iter()
                    .collect()
            });
            let action = match existing {
                None => Some(Action::Create),
                Some(t) if access(t) != wanted => {
                    self.work.tokens_revoked.push(t.id.clone());
                    Some(Action::Replace)
                }
                Some(_) => None,
            };
            if action.is_some() {
                self.work
                    .tokens_created
                    .push((name.clone(), declared.clone()));
            }
            let reasons = match existing {
                Some(t) if action.is_some() => vec![format!("{} -> {}", access(t), wanted)],
                _ => vec![wanted.clone()],
            };
            self.change(Kind::Token, name, action, reasons, drift);
            if action == Some(Action::Replace) {
                self.loses(
                    "its secret, which stops working; the new one is shown once".to_string(),
                );
            }
        }
        for name in self.undeclared(Kind::Token, |n| declaration.tokens.contains_key(n)) {
            let Some(existing) = find(&name) else {
                continue;
            };
            self.work.tokens_revoked.push(existing.id.clone());
            self.change(Kind::Token, &name, Some(Action::Destroy), Vec::new(), None);
            self.loses("its secret, which stops working".to_string());
        }
        Ok(())
    }

    /// `[deploy] functions`: the folder's triggered functions, as `basin deploy --plan`
    /// compares them.
    pub(super) async fn functions(&mut self, declaration: &Declaration) -> Result<()> {
        let Some(deploy) = &declaration.deploy else {
            return Ok(());
        };
        let plan = self
            .lake
            .triggers()
            .deploy(&deploy.functions, false)
            .await?;
        for change in &plan.changes {
            let action = match change.action.as_str() {
                "add" => Action::Create,
                "change" => Action::Update,
                "remove" => Action::Destroy,
                _ => continue,
            };
            let mut reasons = vec![change.trigger.clone()];
            if !change.detail.is_empty() {
                reasons.push(change.detail.clone());
            }
            self.change(
                Kind::Function,
                &change.function,
                Some(action),
                reasons,
                None,
            );
        }
        self.work.deploy = Some(deploy.functions.clone());
        Ok(())
    }
}

/// A declared token's access, as `role reader` or `grants read:sales.*, ...`; checked as
/// `basin token create` checks it.
fn token_access(declared: &TokenDecl) -> Result<String> {
    match (&declared.role, declared.grants.is_empty()) {
        (Some(role), true) => Ok(format!("role {}", Role::parse(role)?.as_str())),
        (None, false) => {
            let grants = declared
                .grants
                .iter()
                .map(|g| Grant::parse(g).map(|g| g.display()))
                .collect::<Result<Vec<_>>>()?;
            Ok(format!("grants {}", grants.join(", ")))
        }
        (Some(_), false) => Err(Error::invalid("a token has a role or grants, not both")),
        (None, true) => Err(Error::invalid("a token needs a role or grants")
            .with_hint("e.g. role = \"reader\", or grants = [\"read:sales.*\"]")),
    }
}

/// A token's access in the words of [`token_access`].
fn access(token: &TokenRecord) -> String {
    if token.grants.is_empty() {
        format!("role {}", token.role)
    } else {
        format!("grants {}", token.grants.join(", "))
    }
}

fn token_json(token: &TokenRecord) -> Value {
    json!({ "id": token.id, "access": access(token) })
}
