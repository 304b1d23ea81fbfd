//! The audit log (`basin audit ls`): every commit and change to the refs, every refusal,
//! and every request that asks `basin serve` to change something, with who, when, through
//! which door and how it ended. The catalog records commits and refs; the server's doors
//! record requests and refused logins. `[maintenance] keep_audit` bounds how long it is kept.

use basin_catalog::{AuditEntry, AuditFilter};
use basin_core::Result;

use crate::Lakehouse;

/// The principal the audit log names for a secret that is no token's (or a sign-in token
/// that does not hold up).
pub const UNKNOWN_TOKEN: &str = "(unknown token)";

/// The most entries one listing answers.
pub const MAX_AUDIT_ENTRIES: usize = 10_000;

/// The audit log.
///
/// A handle borrowing the lakehouse: [`Lakehouse::audit`].
#[derive(Clone, Copy)]
pub struct AuditLog<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// The audit log: see [`AuditLog`].
    pub fn audit(&self) -> AuditLog<'_> {
        AuditLog { lake: self }
    }
}

impl AuditLog<'_> {
    /// Entries newest first: of `principal` only, since `since_ms`, at most `limit`
    /// (up to [`MAX_AUDIT_ENTRIES`]).
    pub async fn list(
        &self,
        principal: Option<&str>,
        since_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let filter = AuditFilter {
            principal: principal.map(str::to_string),
            since_ms,
            limit: limit.min(MAX_AUDIT_ENTRIES),
        };
        self.lake.catalog().store().audit(&filter).await
    }

    /// Records that a secret which named no principal was refused at `door`, as `outcome`
    /// (the door's word for it: `401`, `refused`).
    pub async fn record_refused_secret(
        &self,
        door: &'static str,
        action: &str,
        outcome: &str,
        detail: &str,
    ) {
        let stranger = basin_catalog::actor::Actor::new(UNKNOWN_TOKEN, door);
        basin_catalog::actor::scope(stranger, self.record(action, "", outcome, detail)).await;
    }

    /// Records what the acting principal did; see [`basin_catalog::Catalog::audit`].
    pub async fn record(&self, action: &str, target: &str, outcome: &str, detail: &str) {
        self.lake
            .catalog()
            .audit(action, target, outcome, detail)
            .await;
    }
}
