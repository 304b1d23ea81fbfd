//! The required checks of a protected branch (`[checks.NAME]`), run on a merge's would-be
//! result: the merge is committed to a scratch branch made at the target's head, each check's
//! query runs there, and the scratch branch is deleted. A check passes when its query returns
//! no rows. A pipeline run's branch (`run/ID`) also carries its expectations' outcomes
//! ([`Refs::expectation_checks`]).

use arrow::util::pretty::pretty_format_batches;
use basin_catalog::{Clearance, CommitId, CommitRequest, Operation, Resolved};
use basin_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use super::refs::Refs;

/// Offending rows a failed check shows.
const SHOWN_ROWS: usize = 5;

/// One check's outcome on a merge's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub name: String,
    pub sql: String,
    pub passed: bool,
    /// Rows the query returned (0 when it passed).
    pub rows: usize,
    /// The first offending rows, as a table for people; empty when it passed.
    pub first_rows: String,
    /// Why the query itself failed (a check that cannot run fails).
    pub error: Option<String>,
}

/// What a merge would commit: its operations on top of `head`, the source's head its
/// second parent.
pub(crate) struct Trial<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub head: &'a CommitId,
    pub source_head: &'a CommitId,
    pub operations: &'a [Operation],
}

impl Refs<'_> {
    /// Runs `checks` on what `trial` would commit; the outcomes in the order given.
    pub(crate) async fn run_checks(
        &self,
        trial: &Trial<'_>,
        checks: &[String],
    ) -> Result<Vec<CheckOutcome>> {
        let catalog = self.lake.catalog();
        let scratch = format!(
            "{}{}",
            basin_catalog::protection::SCRATCH_PREFIX,
            &basin_core::ids::random()[..12]
        );
        let at = Resolved {
            spec: trial.target.to_string(),
            branch: None,
            commit: trial.head.clone(),
        };
        catalog.create_branch(&scratch, &at).await?;
        let outcomes = async {
            let mut request = CommitRequest::new(
                &scratch,
                trial.head.clone(),
                format!("check merging {} into {}", trial.source, trial.target),
            )
            .with_operations(trial.operations.iter().cloned())
            .cleared(Clearance::Trial);
            request.merge_parent = Some(trial.source_head.clone());
            catalog.commit(request).await?;
            let mut outcomes = Vec::new();
            for name in checks {
                outcomes.push(self.run_check(name, &scratch).await?);
            }
            Ok::<_, Error>(outcomes)
        }
        .await;
        // The scratch branch goes whatever happened (directly: a `*` rule protects it too).
        if let Err(e) = catalog.store().delete_ref(&scratch).await {
            tracing::warn!("cannot delete the scratch branch {scratch}: {e}");
        }
        outcomes
    }

    /// The expectations of the pipeline run whose branch `source` is (`run/ID`), as checks:
    /// a run kept for a review carries how its expectations ended, and one whose expectation
    /// failed cannot be merged. (Read from the run's stored record: the pipeline layer sits
    /// above this one.) Empty for any other branch, or a run not recorded.
    pub(crate) async fn expectation_checks(&self, source: &str) -> Result<Vec<CheckOutcome>> {
        // A review merges `run/ID@COMMIT`, the head its approvals were given at.
        let branch = source.split('@').next().unwrap_or(source);
        let Some(id) = branch.strip_prefix("run/") else {
            return Ok(Vec::new());
        };
        let records = self.lake.catalog().store().runs_with_prefix(id).await?;
        let Some(record) = records
            .iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(r).ok())
            .find(|r| r.get("id").and_then(|v| v.as_str()) == Some(id))
        else {
            return Ok(Vec::new());
        };
        let text = |m: &serde_json::Value, k: &str| {
            m.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let models = record.get("models").and_then(|m| m.as_array());
        Ok(models
            .into_iter()
            .flatten()
            .filter(|m| text(m, "kind") == "expectation")
            .map(|m| {
                let passed = text(m, "status") == "ok";
                CheckOutcome {
                    name: format!("expectation {}", text(m, "name")),
                    sql: String::new(),
                    passed,
                    rows: 0,
                    first_rows: String::new(),
                    error: (!passed).then(|| match text(m, "error") {
                        e if e.is_empty() => format!("it ended {}", text(m, "status")),
                        e => e,
                    }),
                }
            })
            .collect())
    }

    async fn run_check(&self, name: &str, branch: &str) -> Result<CheckOutcome> {
        let check = self.lake.settings().checks.get(name).ok_or_else(|| {
            Error::invalid(format!("no check is named `{name}`"))
                .with_hint("declare it in basin.toml: [checks.NAME] sql = \"SELECT ...\"")
        })?;
        let mut outcome = CheckOutcome {
            name: name.to_string(),
            sql: check.sql.clone(),
            passed: false,
            rows: 0,
            first_rows: String::new(),
            error: None,
        };
        match self.lake.query(&check.sql, Some(branch), None).await {
            Ok(answer) => {
                outcome.rows = answer.num_rows();
                outcome.passed = outcome.rows == 0;
                if !outcome.passed {
                    let mut left = SHOWN_ROWS;
                    let mut shown = Vec::new();
                    for batch in &answer.batches {
                        if left == 0 {
                            break;
                        }
                        let take = left.min(batch.num_rows());
                        shown.push(batch.slice(0, take));
                        left -= take;
                    }
                    outcome.first_rows = pretty_format_batches(&shown)
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                }
            }
            Err(e) => outcome.error = Some(e.to_string()),
        }
        Ok(outcome)
    }
}

/// The refusal of a merge whose checks did not all pass, naming each failed check and its
/// first offending rows.
pub(crate) fn failed_checks(
    source: &str,
    target: &str,
    outcomes: &[CheckOutcome],
) -> Option<Error> {
    let failed: Vec<&CheckOutcome> = outcomes.iter().filter(|o| !o.passed).collect();
    if failed.is_empty() {
        return None;
    }
    let mut message = format!(
        "cannot merge `{source}` into `{target}`: {} of its required checks failed",
        failed.len()
    );
    for o in &failed {
        match &o.error {
            // A pipeline expectation: it ran in the run, and failed there.
            Some(e) if o.sql.is_empty() => {
                message.push_str(&format!("\n{} failed in its run: {e}", o.name));
            }
            Some(e) => message.push_str(&format!("\ncheck `{}` could not run: {e}", o.name)),
            None => message.push_str(&format!(
                "\ncheck `{}` returned {} row{} (first {}):\n{}",
                o.name,
                o.rows,
                if o.rows == 1 { "" } else { "s" },
                o.rows.min(SHOWN_ROWS),
                o.first_rows
            )),
        }
    }
    Some(Error::new(ErrorKind::Forbidden, message).with_hint(format!(
        "nothing was merged. Fix the rows on `{source}` (each check's query lists them), then merge again"
    )))
}
