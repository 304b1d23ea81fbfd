//! Reviews (`basin review`): a proposed merge into a (usually protected) branch that other
//! principals approve before it lands, as a code forge's pull request. A review shows the
//! source's changes since it left the target and the target's required checks run on the
//! would-be result; an approval counts for the source's head it was given at, so a later
//! change to the source needs approving again; the review's author cannot approve it.

use basin_catalog::{NewReview, ReviewRecord, ReviewState};
use basin_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use super::checks::CheckOutcome;
use super::merge::MergeReport;
use super::refs::TableDiff;
use crate::Lakehouse;

/// A review with what it would merge (`basin review show`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReviewDetail {
    #[serde(flatten)]
    pub review: ReviewRecord,
    /// The source's head now; approvals of an older head do not count.
    pub source_head: String,
    /// Approvals the target's protection asks for.
    pub approvals_needed: u32,
    /// Approvals that count: of the source's current head, by someone not the author.
    pub approvals_valid: u32,
    /// What the source changed since it left the target (empty once the review ended).
    pub diff: Vec<TableDiff>,
    /// The target's required checks on the would-be result (only while open).
    pub checks: Vec<CheckOutcome>,
}

/// Reviews of merges (`basin review`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::reviews`].
#[derive(Clone, Copy)]
pub struct Reviews<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Reviews of merges: see [`Reviews`].
    pub fn reviews(&self) -> Reviews<'_> {
        Reviews { lake: self }
    }
}

impl Reviews<'_> {
    /// Opens a review of merging the branch `source` into the branch `into`.
    pub async fn open(
        &self,
        source: &str,
        into: &str,
        title: Option<&str>,
    ) -> Result<ReviewRecord> {
        let catalog = self.lake.catalog();
        for name in [source, into] {
            catalog.resolve(name).await?.writable_branch()?;
        }
        if source == into {
            return Err(Error::invalid(format!("a review of `{source}` into itself merges nothing"))
                .with_hint("name the branch the changes are on and the branch they go into: `basin review open dev --into main`"));
        }
        let open = catalog.store().reviews(Some(ReviewState::Open)).await?;
        if let Some(same) = open.iter().find(|r| r.source == source && r.target == into) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "review #{} already proposes merging `{source}` into `{into}`",
                    same.id
                ),
            )
            .with_hint(format!("see it with `basin review show {}`", same.id)));
        }
        let review = NewReview {
            source: source.to_string(),
            target: into.to_string(),
            author: self.lake.catalog().principal(),
            title: title
                .map(str::to_string)
                .unwrap_or_else(|| format!("merge {source} into {into}")),
            created_at_ms: basin_core::time::now_ms(),
        };
        let id = catalog.store().open_review(&review).await?;
        catalog
            .audit("open review", &format!("#{id}"), "ok", &review.title)
            .await;
        self.get(id).await
    }

    pub async fn list(&self, state: Option<ReviewState>) -> Result<Vec<ReviewRecord>> {
        self.lake.catalog().store().reviews(state).await
    }

    pub async fn get(&self, id: i64) -> Result<ReviewRecord> {
        self.lake
            .catalog()
            .store()
            .review(id)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("there is no review #{id}"))
                    .with_hint("list them with `basin review ls`")
            })
    }

    /// The review with its diff, its approvals that count and (while open) its checks.
    pub async fn show(&self, id: i64) -> Result<ReviewDetail> {
        let review = self.get(id).await?;
        let source_head = self.source_head(&review).await?;
        let mut detail = ReviewDetail {
            approvals_needed: self.needed(&review),
            approvals_valid: valid_approvals(&review, &source_head),
            source_head,
            diff: Vec::new(),
            checks: Vec::new(),
            review,
        };
        if detail.review.state == ReviewState::Open {
            let catalog = self.lake.catalog();
            let (source, target) = (
                catalog.resolve(&detail.review.source).await?,
                catalog.resolve(&detail.review.target).await?,
            );
            let base = catalog
                .store()
                .merge_base(&source.commit, &target.commit)
                .await?
                .unwrap_or(target.commit);
            detail.diff = self
                .lake
                .refs()
                .diff_tables(&format!("@{base}"), &detail.review.source)
                .await?;
            detail.checks = self
                .lake
                .refs()
                .check_merge(&detail.review.source, &detail.review.target)
                .await?;
        }
        Ok(detail)
    }

    /// Approves review `id` as the acting principal, for the source's current head.
    pub async fn approve(&self, id: i64) -> Result<ReviewRecord> {
        let review = self.open_review(id).await?;
        let principal = self.lake.catalog().principal();
        let catalog = self.lake.catalog();
        if principal == review.author {
            let refused = Error::new(
                ErrorKind::Forbidden,
                format!("`{principal}` opened review #{id} and cannot approve it"),
            )
            .with_hint("another principal approves it (a teammate's token)");
            catalog
                .audit(
                    "approve review",
                    &format!("#{id}"),
                    "refused",
                    &refused.to_string(),
                )
                .await;
            return Err(refused);
        }
        let head = self.source_head(&review).await?;
        catalog
            .store()
            .approve_review(id, &principal, &head, basin_core::time::now_ms())
            .await?;
        catalog
            .audit(
                "approve review",
                &format!("#{id}"),
                "ok",
                &format!("{} at {head}", review.source),
            )
            .await;
        self.get(id).await
    }

    /// Merges review `id`: its approvals of the source's current head count toward the
    /// target's protection, and the target's checks run on the result.
    pub async fn merge(&self, id: i64) -> Result<MergeReport> {
        let review = self.open_review(id).await?;
        let head = self.source_head(&review).await?;
        let approvals = valid_approvals(&review, &head);
        // The commit merged is the head the approvals are for, not whatever the branch
        // holds by the time the merge runs.
        let source = format!("{}@{head}", review.source);
        let report = self
            .lake
            .refs()
            .merge_approved(&source, Some(&review.target), false, approvals)
            .await?;
        let ended = self
            .lake
            .catalog()
            .store()
            .end_review(
                id,
                ReviewState::Merged,
                &self.lake.catalog().principal(),
                report.commit.as_deref(),
                basin_core::time::now_ms(),
            )
            .await?;
        if !ended {
            tracing::warn!("review #{id} ended while it was being merged");
        }
        Ok(report)
    }

    /// Closes review `id` without merging.
    pub async fn close(&self, id: i64) -> Result<ReviewRecord> {
        self.open_review(id).await?;
        self.lake
            .catalog()
            .store()
            .end_review(
                id,
                ReviewState::Closed,
                &self.lake.catalog().principal(),
                None,
                basin_core::time::now_ms(),
            )
            .await?;
        self.lake
            .catalog()
            .audit("close review", &format!("#{id}"), "ok", "")
            .await;
        self.get(id).await
    }

    async fn open_review(&self, id: i64) -> Result<ReviewRecord> {
        let review = self.get(id).await?;
        if review.state != ReviewState::Open {
            return Err(Error::invalid(format!(
                "review #{id} is {} already",
                review.state.as_str()
            ))
            .with_hint("open a new one with `basin review open BRANCH --into TARGET`"));
        }
        Ok(review)
    }

    async fn source_head(&self, review: &ReviewRecord) -> Result<String> {
        Ok(self
            .lake
            .catalog()
            .resolve(&review.source)
            .await?
            .commit
            .to_string())
    }

    fn needed(&self, review: &ReviewRecord) -> u32 {
        self.lake
            .catalog()
            .protection()
            .rule(&review.target)
            .map_or(0, |r| r.approvals)
    }
}

/// Approvals of `head` by principals other than the review's author.
fn valid_approvals(review: &ReviewRecord, head: &str) -> u32 {
    review
        .approvals
        .iter()
        .filter(|a| a.source_head == head && a.principal != review.author)
        .count() as u32
}
