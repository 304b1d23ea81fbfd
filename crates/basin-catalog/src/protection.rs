//! Protected branches (`[[branches.protect]]`): no direct commits; changes arrive by a merge
//! that passed the branch's checks and got its approvals.
//!
//! The catalog enforces the first half for every writer at once, since every write is a
//! commit ([`crate::Catalog::commit`]): an import, an Iceberg REST commit, a function's
//! output, a CDC batch. The merge that runs the checks and counts approvals is above
//! (basin-service), and marks its commit [`Clearance::CheckedMerge`].

use basin_core::{Error, ErrorKind, Result};

/// The names of the scratch branches a merge's checks run on (`basin/checks/ID`).
pub const SCRATCH_PREFIX: &str = "basin/checks/";

/// One `[[branches.protect]]` rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtectRule {
    /// A branch name, or a pattern where `*` stands for any run of characters (`release/*`).
    pub pattern: String,
    /// The names of the `[checks.NAME]` a merge into the branch must pass.
    pub checks: Vec<String>,
    /// Approvals a merge needs from principals other than the review's author.
    pub approvals: u32,
}

/// Every protected branch pattern.
#[derive(Clone, Debug, Default)]
pub struct Protection {
    rules: Vec<ProtectRule>,
}

/// What a commit to a protected branch was cleared by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clearance {
    /// Nothing: refused on a protected branch.
    #[default]
    Direct,
    /// A merge that ran the branch's checks and counted its approvals.
    CheckedMerge,
    /// Maintenance that rewrites files and keeps every row (compaction, snapshot expiry).
    Maintenance,
    /// A merge tried on a scratch branch to run the checks on its result; deleted after.
    Trial,
    /// An admin's `--bypass-protection`.
    Bypass,
}

impl Protection {
    pub fn new(rules: Vec<ProtectRule>) -> Self {
        Self { rules }
    }

    /// What protects `branch`: every matching rule's checks, and the most approvals any asks.
    pub fn rule(&self, branch: &str) -> Option<ProtectRule> {
        let mut matching = self
            .rules
            .iter()
            .filter(|r| matches(&r.pattern, branch))
            .peekable();
        let first = matching.peek()?.pattern.clone();
        let mut rule = ProtectRule {
            pattern: first,
            ..ProtectRule::default()
        };
        for r in matching {
            for check in &r.checks {
                if !rule.checks.contains(check) {
                    rule.checks.push(check.clone());
                }
            }
            rule.approvals = rule.approvals.max(r.approvals);
        }
        Some(rule)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Refuses a commit to `branch` that nothing cleared, if the branch is protected.
    pub(crate) fn admit(&self, branch: &str, clearance: Clearance) -> Result<()> {
        if clearance != Clearance::Direct {
            return Ok(());
        }
        match self.rule(branch) {
            None => Ok(()),
            Some(rule) => Err(refused_write(branch, &rule)),
        }
    }
}

fn refused_write(branch: &str, rule: &ProtectRule) -> Error {
    let how = if rule.approvals > 0 {
        format!("open a review with `basin review open BRANCH --into {branch}`")
    } else {
        format!("merge it with `basin merge BRANCH --into {branch}`")
    };
    Error::new(
        ErrorKind::Forbidden,
        format!(
            "branch `{branch}` is protected (basin.toml: [[branches.protect]] pattern = \"{}\"): \
             changes reach it only by merge",
            rule.pattern
        ),
    )
    .with_hint(format!(
        "write to another branch (`basin branch create dev`, then `--branch dev`), then {how}"
    ))
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters (`/`
/// included) and everything else for itself. Written here: a glob crate's path rules (`*`
/// stops at `/`) are not what a branch pattern means.
pub fn matches(pattern: &str, name: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut name) = name.strip_prefix(head) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or_default();
    for part in parts {
        match name.find(part) {
            Some(at) => name = &name[at + part.len()..],
            None => return false,
        }
    }
    name.len() >= last.len() && name.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_a_star_says() {
        let cases = [
            ("main", "main", true),
            ("main", "main2", false),
            ("*", "anything/at/all", true),
            ("release/*", "release/1.0", true),
            ("release/*", "release", false),
            ("dev/*/x", "dev/a/b/x", true),
            ("dev/*/x", "dev/a/b/y", false),
            ("*-prod", "eu-prod", true),
            ("a*a", "a", false),
            ("a*a", "aa", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(matches(pattern, name), expected, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn a_protected_branch_refuses_what_nothing_cleared() {
        let protection = Protection::new(vec![
            ProtectRule {
                pattern: "main".into(),
                checks: vec!["a".into()],
                approvals: 0,
            },
            ProtectRule {
                pattern: "m*".into(),
                checks: vec!["b".into(), "a".into()],
                approvals: 1,
            },
        ]);
        let e = protection.admit("main", Clearance::Direct).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        for cleared in [
            Clearance::CheckedMerge,
            Clearance::Maintenance,
            Clearance::Trial,
            Clearance::Bypass,
        ] {
            protection.admit("main", cleared).unwrap();
        }
        protection.admit("dev", Clearance::Direct).unwrap();
        let rule = protection.rule("main").unwrap();
        assert_eq!(rule.checks, ["a", "b"]);
        assert_eq!(rule.approvals, 1);
    }
}
