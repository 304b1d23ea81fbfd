//! The tables a process has loaded, kept for the next query (`[sql] table_cache`).
//!
//! A metadata file never changes once written, so a table loaded from one can be handed out
//! again: a long-lived process (`basin serve`) reads and parses each metadata file once, and
//! the table keeps the manifests it has read (iceberg's object cache) for the next query.
//! Kept per tokio runtime, since a table spawns its work on the runtime that loaded it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use basin_catalog::Key;
use iceberg::table::Table;

use crate::error::Result;

/// How many loaded tables a process keeps unless told (`[sql] table_cache`).
pub const LOADED_TABLES: u64 = 128;

/// A loaded table unused this long is let go (with the manifests it holds).
const IDLE: Duration = Duration::from_secs(600);

/// Tables loaded before, by runtime, name and metadata file.
#[derive(Clone)]
pub(crate) struct LoadedTables {
    /// `None` when `[sql] table_cache` is 0.
    tables: Option<moka::future::Cache<(tokio::runtime::Id, String, String), Table>>,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
}

/// What the cache of loaded tables holds and has done (`Tables::loaded_tables`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadedTablesStats {
    pub tables: u64,
    pub hits: u64,
    pub misses: u64,
}

impl LoadedTables {
    /// Keeps at most `capacity` tables; 0 keeps none.
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            tables: (capacity > 0).then(|| {
                moka::future::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_idle(IDLE)
                    .build()
            }),
            hits: Arc::default(),
            misses: Arc::default(),
        }
    }

    /// The table `key` at `metadata_location`: the one kept, else what `read` gives (kept).
    pub(crate) async fn get_or_read(
        &self,
        key: &Key,
        metadata_location: &str,
        read: impl Future<Output = Result<Table>>,
    ) -> Result<Table> {
        let (Some(tables), Ok(runtime)) = (&self.tables, tokio::runtime::Handle::try_current())
        else {
            return read.await;
        };
        let id = (runtime.id(), key.to_string(), metadata_location.to_string());
        if let Some(table) = tables.get(&id).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(table);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let table = read.await?;
        tables.insert(id, table.clone()).await;
        Ok(table)
    }

    pub(crate) fn stats(&self) -> LoadedTablesStats {
        LoadedTablesStats {
            tables: self.tables.as_ref().map_or(0, |t| t.entry_count()),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for LoadedTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.stats(), f)
    }
}
