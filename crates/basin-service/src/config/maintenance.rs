//! `[maintenance]` in basin.toml: how long snapshots, catalog history and Basin's own
//! leftovers are kept, and when `basin serve` runs maintenance.

use serde::Deserialize;
use std::time::Duration;

use super::DurationValue;
use crate::{Error, Result};

/// `[maintenance]`: how long snapshots, catalog history and Basin's own leftovers are kept.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSection {
    pub keep_snapshots: Option<DurationValue>,
    pub keep_last: Option<usize>,
    pub keep_history: Option<DurationValue>,
    pub keep_cache: Option<DurationValue>,
    pub keep_run_branches: Option<DurationValue>,
    pub keep_runs: Option<DurationValue>,
    pub keep_uploads: Option<DurationValue>,
    pub keep_events: Option<DurationValue>,
    pub keep_envs: Option<DurationValue>,
    pub keep_audit: Option<DurationValue>,
    pub schedule: Option<String>,
    pub compact_min_files: Option<usize>,
    pub gc_grace: Option<DurationValue>,
}

/// When `basin serve` runs maintenance unless `[maintenance] schedule` says otherwise:
/// nightly, at 03:00 UTC.
pub const DEFAULT_MAINTENANCE_SCHEDULE: &str = "0 3 * * *";

/// `[maintenance]`, resolved.
#[derive(Clone, Debug)]
pub struct MaintenanceSettings {
    /// `basin table expire` drops a branch's table snapshots older than this (`MAX`: never),
    /// unless the table's `history.expire.max-snapshot-age-ms` says otherwise.
    pub keep_snapshots: std::time::Duration,
    /// ... but keeps this many of the newest (`history.expire.min-snapshots-to-keep`).
    pub keep_last: usize,
    /// `basin gc` drops catalog commits older than this that no ref needs (`MAX`: never).
    pub keep_history: std::time::Duration,
    /// Run cache entries unused this long are removed (the model runs again).
    pub keep_cache: std::time::Duration,
    /// The `run/<id>` branches of failed and dry runs that finished this long ago are deleted
    /// (their records stay).
    pub keep_run_branches: std::time::Duration,
    /// The records (code, logs) of runs that finished this long ago are deleted, once their
    /// branch is gone.
    pub keep_runs: std::time::Duration,
    /// Upload folders this old (left by a request that died) are removed.
    pub keep_uploads: std::time::Duration,
    /// Events that succeeded this long ago are pruned (see `basin_catalog::EventsPruned`).
    pub keep_events: std::time::Duration,
    /// Function environments no invocation used for this long are removed (built again when
    /// next needed).
    pub keep_envs: std::time::Duration,
    /// Audit log entries older than this are deleted.
    pub keep_audit: std::time::Duration,
    /// When `basin serve` runs maintenance: a cron expression in UTC (`None`: never).
    pub schedule: Option<String>,
    /// Scheduled maintenance compacts a table when its branch head has this many small files.
    pub compact_min_files: usize,
    /// Garbage collection keeps unreferenced files younger than this: they may belong to a
    /// write still in flight (an import, a pipeline run, a CDC batch), which names them only
    /// when it commits. Scheduled maintenance uses it, and `basin gc` without `--grace`.
    pub gc_grace: std::time::Duration,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            keep_snapshots: std::time::Duration::from_secs(7 * DAY),
            keep_last: 1,
            keep_history: std::time::Duration::from_secs(30 * DAY),
            keep_cache: std::time::Duration::from_secs(30 * DAY),
            keep_run_branches: std::time::Duration::from_secs(7 * DAY),
            keep_runs: std::time::Duration::from_secs(90 * DAY),
            keep_uploads: std::time::Duration::from_secs(DAY),
            keep_events: std::time::Duration::from_secs(30 * DAY),
            keep_envs: std::time::Duration::from_secs(30 * DAY),
            keep_audit: std::time::Duration::from_secs(365 * DAY),
            schedule: Some(DEFAULT_MAINTENANCE_SCHEDULE.to_string()),
            compact_min_files: 16,
            gc_grace: std::time::Duration::from_secs(3600),
        }
    }
}

impl MaintenanceSection {
    /// The settings this section asks for; `setting(name)` names a key in errors.
    pub(super) fn resolve(&self, setting: &dyn Fn(&str) -> String) -> Result<MaintenanceSettings> {
        let mut maintenance = MaintenanceSettings::default();
        let m = self;
        for (value, field, name) in [
            (
                &m.keep_snapshots,
                &mut maintenance.keep_snapshots,
                "keep_snapshots",
            ),
            (
                &m.keep_history,
                &mut maintenance.keep_history,
                "keep_history",
            ),
            (&m.keep_cache, &mut maintenance.keep_cache, "keep_cache"),
            (
                &m.keep_run_branches,
                &mut maintenance.keep_run_branches,
                "keep_run_branches",
            ),
            (&m.keep_runs, &mut maintenance.keep_runs, "keep_runs"),
            (
                &m.keep_uploads,
                &mut maintenance.keep_uploads,
                "keep_uploads",
            ),
            (&m.keep_events, &mut maintenance.keep_events, "keep_events"),
            (&m.keep_envs, &mut maintenance.keep_envs, "keep_envs"),
            (&m.keep_audit, &mut maintenance.keep_audit, "keep_audit"),
        ] {
            if let Some(v) = value {
                // "off": kept forever.
                *field = v.limit(&setting(name))?.unwrap_or(std::time::Duration::MAX);
            }
        }
        if let Some(v) = &m.gc_grace {
            let grace = v
                .limit(&setting("gc_grace"))?
                .unwrap_or(std::time::Duration::MAX);
            if grace < MIN_GRACE {
                return Err(Error::invalid(format!(
                    "{}: {} is shorter than a write may take",
                    setting("gc_grace"),
                    basin_core::units::format_duration(grace)
                ))
                .with_hint("at least \"1m\"; the default \"1h\" outlasts most writes"));
            }
            maintenance.gc_grace = grace;
        }
        if let Some(n) = m.keep_last {
            if n == 0 {
                return Err(Error::invalid(format!(
                    "{}: 0 would expire the current snapshot",
                    setting("keep_last")
                ))
                .with_hint("keep_last = 1 keeps only the current snapshot (the least there is)"));
            }
            maintenance.keep_last = n;
        }
        match m.schedule.as_deref().map(str::trim) {
            None => {}
            Some("off") => maintenance.schedule = None,
            Some(cron) => {
                crate::cron::Schedule::parse(cron, "UTC", "skip").map_err(|e| {
                Error::invalid(format!("{}: {e}", setting("schedule")))
                    .with_hint("a cron expression in UTC, e.g. \"0 3 * * *\" (nightly at 03:00), or \"off\"")
            })?;
                maintenance.schedule = Some(cron.to_string());
            }
        }
        if let Some(n) = m.compact_min_files {
            if n < 2 {
                return Err(Error::invalid(format!(
                    "{}: {n} would compact a table of one file",
                    setting("compact_min_files")
                ))
                .with_hint("give 2 or more (the default is 16)"));
            }
            maintenance.compact_min_files = n;
        }
        Ok(maintenance)
    }
}

/// The shortest grace period `basin gc` accepts: below it, a commit in flight could lose the
/// files it has written.
pub const MIN_GRACE: Duration = Duration::from_secs(60);
