//! Basin's configuration, declared once: `.basin/config.toml` (written by `basin init`), then
//! the user's `basin.toml` beside `.basin/`, then `BASIN_*` environment variables, then flags.

mod auth;
pub(crate) mod buckets;
mod file;
mod grants;
mod maintenance;
mod protection;
mod secrets;
mod server;
mod settings;
pub(crate) mod sources;
mod sql;
mod values;

pub use auth::{AuthSection, ConsoleSignIn, OidcSection, OidcSettings};
pub use buckets::S3Bucket;
pub use file::{
    BucketSection, CatalogConfig, DEFAULT_EVENT_LEASE, DEFAULT_MODEL_WORKER_WAIT, FunctionsSection,
    LakehouseConfig, Pricing, PricingSection, S3Config, UserConfig, UserSection, WarehouseConfig,
};
pub use grants::{DeclaredGrants, GrantSection};
pub use maintenance::{
    DEFAULT_MAINTENANCE_SCHEDULE, MIN_GRACE, MaintenanceSection, MaintenanceSettings,
};
pub use protection::{BranchesSection, Check, CheckSection, ProtectSection};
pub use secrets::{Secret, SecretFrom, SecretSection};
pub use server::{ServerSection, ServerSettings, TlsFiles};
pub use settings::{Settings, discover};
pub use sources::{
    DEFAULT_BATCH_ROWS, DEFAULT_BATCH_SECONDS, DEFAULT_MAX_TRANSACTION_CHANGES,
    DEFAULT_PUBLICATION, DEFAULT_READERS, SourceConfig, SourceMode, SourceSection,
};
pub use sql::{BallistaSection, SqlSection, free_space};
pub(crate) use values::toml_error;
pub use values::{BASIN_DIR, DurationValue, SizeValue, env};

#[cfg(test)]
mod tests;
