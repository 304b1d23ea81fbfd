//! `basin merge`: three-way at table level, with appends on both sides merged.

use basin_catalog::{Change, Clearance, CommitRequest, Content, Operation, ProtectRule};
use basin_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use super::checks::{CheckOutcome, Trial, failed_checks};
use super::refs::Refs;

/// How often a merge is re-planned when the target moves under it.
const MAX_ATTEMPTS: u32 = 10;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MergeReport {
    pub source: String,
    pub target: String,
    pub base: String,
    /// The merge commit; `None` for a dry run or when there was nothing to merge.
    pub commit: Option<String>,
    pub dry_run: bool,
    pub changes: Vec<MergedChange>,
    /// The target's required checks, run on the merge's result (protected branches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckOutcome>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MergedChange {
    pub key: String,
    pub change: Change,
    /// True when both sides appended to the table and their snapshots were combined.
    pub appends_merged: bool,
}

/// A merge worked out and staged, not committed: what it would write on top of `head`.
struct Prepared {
    source_head: basin_catalog::CommitId,
    head: basin_catalog::CommitId,
    base: String,
    operations: Vec<Operation>,
    changes: Vec<MergedChange>,
}

impl Refs<'_> {
    /// Merges `source` into the branch `into` (default: the current branch) in one commit.
    /// A table changed on both sides is a conflict, unless both sides only appended to it;
    /// on conflict nothing is written.
    ///
    /// Into a protected branch, the merge needs its approvals (a review's: see
    /// [`Self::merge_approved`]) and its required checks must pass on the result.
    pub async fn merge(
        &self,
        source: &str,
        into: Option<&str>,
        dry_run: bool,
    ) -> Result<MergeReport> {
        self.merge_approved(source, into, dry_run, 0).await
    }

    /// [`Self::merge`], with `approvals` other principals gave (a review's). A merge refused
    /// for its approvals or checks goes in the audit log.
    pub async fn merge_approved(
        &self,
        source: &str,
        into: Option<&str>,
        dry_run: bool,
        approvals: u32,
    ) -> Result<MergeReport> {
        let target = into
            .map(str::to_string)
            .unwrap_or_else(|| self.lake.current_branch());
        let merged = self.merge_into(source, &target, dry_run, approvals).await;
        if let Err(e) = &merged
            && e.kind() == ErrorKind::Forbidden
        {
            let detail = format!("merge {source}: {e}");
            self.lake
                .catalog()
                .audit("merge", &target, "refused", &detail)
                .await;
        }
        merged
    }

    async fn merge_into(
        &self,
        source: &str,
        target: &str,
        dry_run: bool,
        approvals: u32,
    ) -> Result<MergeReport> {
        let target = target.to_string();
        let bypass = basin_catalog::actor::current().is_some_and(|a| a.bypass_protection);
        let rule = match self.lake.catalog().protection().rule(&target) {
            Some(rule) if !bypass => Some(rule),
            _ => None,
        };
        if let Some(rule) = &rule
            && !dry_run
            && approvals < rule.approvals
        {
            return Err(missing_approvals(source, &target, rule, approvals));
        }
        for attempt in 1..=MAX_ATTEMPTS {
            let prepared = self.prepare(source, &target, dry_run).await?;
            let mut report = MergeReport {
                source: source.to_string(),
                target: target.clone(),
                base: prepared.base.clone(),
                commit: None,
                dry_run,
                changes: prepared.changes.clone(),
                checks: Vec::new(),
            };
            if dry_run || prepared.operations.is_empty() {
                return Ok(report);
            }
            if let Some(rule) = &rule {
                if !rule.checks.is_empty() {
                    report.checks = self
                        .run_checks(&prepared.trial(source, &target), &rule.checks)
                        .await?;
                }
                report.checks.extend(self.expectation_checks(source).await?);
                if let Some(refused) = failed_checks(source, &target, &report.checks) {
                    return Err(refused);
                }
            }
            let mut request = CommitRequest::new(
                &target,
                prepared.head.clone(),
                format!("merge {source} into {target}"),
            )
            .with_operations(prepared.operations)
            .cleared(Clearance::CheckedMerge);
            request.merge_parent = Some(prepared.source_head);
            match self.lake.catalog().commit(request).await {
                Ok(commit) => {
                    report.commit = Some(commit.id.to_string());
                    return Ok(report);
                }
                Err(e) if e.kind() == ErrorKind::Conflict && attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(attempt)))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The required checks of `target` run on what merging `source` into it would make now,
    /// without merging (a review shows them). Empty when the branch requires none.
    pub async fn check_merge(&self, source: &str, target: &str) -> Result<Vec<CheckOutcome>> {
        let Some(rule) = self.lake.catalog().protection().rule(target) else {
            return Ok(Vec::new());
        };
        let mut outcomes = Vec::new();
        if !rule.checks.is_empty() {
            let prepared = self.prepare(source, target, false).await?;
            outcomes = self
                .run_checks(&prepared.trial(source, target), &rule.checks)
                .await?;
        }
        outcomes.extend(self.expectation_checks(source).await?);
        Ok(outcomes)
    }

    /// Plans merging `source` into `target` and, unless `dry_run`, stages the combined
    /// appends: everything but the commit. A conflict fails here, with nothing written.
    async fn prepare(&self, source: &str, target: &str, dry_run: bool) -> Result<Prepared> {
        let source_ref = self.lake.catalog().resolve(source).await?;
        let plan = self.lake.catalog().plan_merge(&source_ref, target).await?;
        let mut operations: Vec<Operation> =
            plan.operations.iter().map(|(op, _)| op.clone()).collect();
        let mut changes: Vec<MergedChange> = plan
            .operations
            .iter()
            .map(|(op, change)| MergedChange {
                key: op.key().to_string(),
                change: *change,
                appends_merged: false,
            })
            .collect();
        // First decide every double change (no writes), then stage the mergeable ones.
        let mut conflicts = Vec::new();
        let mut mergeable = Vec::new();
        for conflict in &plan.conflicts {
            let location = |c: &Option<Content>| {
                c.as_ref()
                    .and_then(Content::metadata_location)
                    .map(str::to_string)
            };
            let found = match (
                location(&conflict.base),
                location(&conflict.source),
                location(&conflict.target),
            ) {
                (Some(b), Some(s), Some(t)) => {
                    self.lake
                        .iceberg_tables()
                        .mergeable_appends(&conflict.key, &b, &s, &t)
                        .await?
                }
                _ => None,
            };
            match found {
                Some(m) => mergeable.push((conflict.key.clone(), m)),
                None => conflicts.push(conflict.key.to_string()),
            }
        }
        if !conflicts.is_empty() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("cannot merge `{source}` into `{target}`: changed on both sides: {}", conflicts.join(", ")),
            )
            .with_hint(format!(
                "nothing was written. Inspect with `basin diff {target} {source}`; revert one side with `basin table revert TABLE --to REF`, then merge again"
            )));
        }
        for (key, merge) in mergeable {
            changes.push(MergedChange {
                key: key.to_string(),
                change: Change::Changed,
                appends_merged: true,
            });
            if !dry_run {
                let table = self
                    .lake
                    .iceberg_tables()
                    .stage_merged_appends(merge)
                    .await?;
                let location = table.metadata_location().unwrap_or_default().to_string();
                operations.push(Operation::Put {
                    key,
                    content: Content::table(location),
                });
            }
        }
        Ok(Prepared {
            source_head: source_ref.commit,
            head: plan.target_head,
            base: plan.base.to_string(),
            operations,
            changes,
        })
    }
}

impl Prepared {
    fn trial<'a>(&'a self, source: &'a str, target: &'a str) -> Trial<'a> {
        Trial {
            source,
            target,
            head: &self.head,
            source_head: &self.source_head,
            operations: &self.operations,
        }
    }
}

fn missing_approvals(source: &str, target: &str, rule: &ProtectRule, approvals: u32) -> Error {
    Error::new(
        ErrorKind::Forbidden,
        format!(
            "merging into `{target}` needs {} approval{} (basin.toml: [[branches.protect]] pattern = \"{}\"); this merge has {approvals}",
            rule.approvals,
            if rule.approvals == 1 { "" } else { "s" },
            rule.pattern
        ),
    )
    .with_hint(format!(
        "open a review with `basin review open {source} --into {target}`; once another principal approves it (`basin review approve N`), merge it with `basin review merge N`"
    ))
}
