//! The persistence boundary of the catalog: one small trait per domain, [`Store`] their sum.
//! Every method is one transaction. The backends (`sqlite/`, `postgres/`) implement each
//! trait in a file of the same name; [`crate::open_store`] picks one by location.

mod audit;
mod commits;
mod queue;
mod records;
mod reviews;
mod settings;
mod tokens;

use std::fmt::Debug;

use async_trait::async_trait;

use basin_core::Result;

pub use audit::Audit;
pub use commits::Commits;
pub use queue::Queue;
pub use records::Records;
pub use reviews::Reviews;
pub use settings::Settings;
pub use tokens::Tokens;

/// Everything the catalog keeps, in one store. `SqlStore` serves SQLite (embedded, and in
/// memory for tests); `PgStore` serves Postgres, for several nodes sharing one catalog.
/// Callers import the domain traits they use, so a file's imports show what it touches.
#[async_trait]
pub trait Store:
    Audit + Commits + Queue + Records + Reviews + Tokens + Settings + Send + Sync + Debug
{
    /// Creates the schema, the root commit and `main` if the store is new. Idempotent.
    async fn initialize(&self) -> Result<()>;
}
