//! Reviews of merges into protected branches (`basin review`): who opened them, who approved
//! which head of the source, and how each ended.

use async_trait::async_trait;

use crate::model::{NewReview, ReviewRecord, ReviewState};
use basin_core::Result;

#[async_trait]
pub trait Reviews: Send + Sync {
    /// Opens a review; its number.
    async fn open_review(&self, review: &NewReview) -> Result<i64>;

    /// A review with its approvals; `None` if there is no such number.
    async fn review(&self, id: i64) -> Result<Option<ReviewRecord>>;

    /// Reviews, newest first; only those in `state` if given.
    async fn reviews(&self, state: Option<ReviewState>) -> Result<Vec<ReviewRecord>>;

    /// Records (or renews) `principal`'s approval of the source at `source_head`.
    async fn approve_review(
        &self,
        id: i64,
        principal: &str,
        source_head: &str,
        at_ms: i64,
    ) -> Result<()>;

    /// Ends an open review as `state` (merged, with its commit, or closed); false if it was
    /// not open any more (another merge or close won).
    async fn end_review(
        &self,
        id: i64,
        state: ReviewState,
        by: &str,
        merged_commit: Option<&str>,
        at_ms: i64,
    ) -> Result<bool>;
}
