//! Picks the catalog's backend by its location.

use std::path::Path;
use std::sync::Arc;

use crate::postgres::PgStore;
use crate::sqlite::SqlStore;
use crate::store::Store;
use basin_core::Result;

/// Opens the catalog at `location`: a `postgres://` or `postgresql://` URL is a Postgres
/// database ([`PgStore`], shared by several nodes), anything else the path of a SQLite file
/// ([`SqlStore`], created if missing). Call [`Store::initialize`] before use.
pub async fn open_store(location: &str) -> Result<Arc<dyn Store>> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(location).await?))
    } else {
        Ok(Arc::new(SqlStore::open(Path::new(location)).await?))
    }
}
