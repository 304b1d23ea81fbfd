//! What every node of a lakehouse agrees on: settings fixed once, and leases for work one
//! node of several does at a time.

use async_trait::async_trait;

use basin_core::Result;

#[async_trait]
pub trait Settings: Send + Sync {
    /// Stores `value` as setting `name` unless it has one already; returns the stored value.
    /// What every node of a lakehouse must agree on (its warehouse) is fixed this way, once.
    async fn fix_setting(&self, name: &str, value: &str) -> Result<String>;

    async fn setting(&self, name: &str) -> Result<Option<String>>;

    /// Stores `value` as setting `name`, replacing what it held: what changes with use, such
    /// as the state a declaration was last applied in (`basin apply`).
    async fn put_setting(&self, name: &str, value: &str) -> Result<()>;

    /// Takes lease `name` for `holder` until `until_ms` if it is free (never taken, or run
    /// out by `now_ms`) or `holder`'s already (a renewal); true if `holder` holds it now.
    /// For work one node of several should do at a time: listing a bucket, maintenance.
    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64)
    -> Result<bool>;

    /// Ends lease `name` if `holder` holds it (its row goes; a lease held by another stays).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}
