//! The stores the behaviour suite runs against, and the macro that runs every test on each.

use std::sync::Arc;

use basin_catalog::{Catalog, Store, open_store};

use super::pg;

/// One test's catalog: a SQLite file in a temporary folder, or a fresh Postgres database.
pub struct Fixture {
    location: String,
    _folder: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn sqlite() -> Fixture {
        let folder = tempfile::tempdir().expect("temporary folder");
        Fixture {
            location: folder.path().join("catalog.db").display().to_string(),
            _folder: Some(folder),
        }
    }

    /// `None` when the Postgres half is skipped (see [`pg::server`]).
    pub async fn postgres() -> Option<Fixture> {
        Some(Fixture {
            location: pg::fresh_database().await?,
            _folder: None,
        })
    }

    /// What `open_store` is given: a path or a `postgres://` URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A store on this catalog, not initialized. Each call is another node: its own
    /// connections (and for SQLite, its own pool over the same file).
    pub async fn node(&self) -> Arc<dyn Store> {
        open_store(&self.location).await.expect("open the store")
    }

    /// A store on this catalog, initialized.
    pub async fn store(&self) -> Arc<dyn Store> {
        let store = self.node().await;
        store.initialize().await.expect("initialize the store");
        store
    }

    pub async fn catalog(&self) -> Catalog {
        Catalog::new(self.store().await)
    }
}

/// Runs each named test, an `async fn(Fixture)` of the calling module, against every store:
/// `sqlite::NAME` and `postgres::NAME`. A test left out of the list is dead code, which
/// clippy refuses, so the two halves cannot drift apart.
macro_rules! every_store {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::stores::Fixture::sqlite()).await
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(fixture) = $crate::stores::Fixture::postgres().await {
                        super::$test(fixture).await
                    }
                }
            )+
        }
    };
}
