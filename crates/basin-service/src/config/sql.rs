//! `[sql]` in basin.toml: what queries may use, and where they run (`[sql.ballista]`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{DurationValue, SizeValue};
use crate::{Error, Result};

/// `[sql]`: what queries may use (every front door, and `basin query`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSection {
    pub memory_limit: Option<SizeValue>,
    pub query_memory_limit: Option<SizeValue>,
    pub query_timeout: Option<DurationValue>,
    pub spill_dir: Option<PathBuf>,
    pub spill_limit: Option<SizeValue>,
    /// DataFusion's own options (`[sql.datafusion]`, e.g.
    /// `"optimizer.hash_join_single_partition_threshold" = 4194304`), for tuning.
    pub datafusion: Option<BTreeMap<String, toml::Value>>,
    /// `local`, `ballista` or `auto`.
    pub engine: Option<String>,
    pub distributed_threshold: Option<SizeValue>,
    /// Loaded tables a process keeps (0: none).
    pub table_cache: Option<u64>,
    /// Bytes of answers a process keeps for the next identical query ("0": none).
    pub result_cache: Option<SizeValue>,
    /// Bytes of decoded columns a server keeps for the next scan of the same files ("0": none).
    pub column_cache: Option<SizeValue>,
    pub column_cache_disk: Option<SizeValue>,
    /// Bytes of one Iceberg metadata file, manifest list or manifest Basin reads.
    pub max_metadata_size: Option<SizeValue>,
    pub max_statement_size: Option<SizeValue>,
    pub max_expression_depth: Option<usize>,
    pub parse_steps_per_token: Option<u64>,
    pub max_joins: Option<usize>,
    pub max_plan_nodes: Option<usize>,
    pub planner_threads: Option<usize>,
    pub planner_stack: Option<SizeValue>,
    /// Threads that run plans (default: one per core).
    pub query_threads: Option<usize>,
    /// Steps of nice the planning and query threads work below the rest (0-19, default 4).
    pub query_nice: Option<i32>,
    /// Requests to the warehouse's S3 store SQL has in flight at once (default 32).
    pub s3_reads: Option<usize>,
    pub ballista: Option<BallistaSection>,
}

/// `[sql.ballista]`: distributed SQL on a cluster.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BallistaSection {
    pub scheduler: Option<String>,
    pub executor_listen: Option<String>,
    pub executor_advertise: Option<String>,
    pub executor_slots: Option<usize>,
    pub executor_timeout: Option<DurationValue>,
}

/// `[sql] spill_limit` unless set: a quarter of the disk space free where spills go, at most
/// 100 GiB, so that queries spilling together cannot fill the disk the lakehouse is on.
pub(crate) fn default_spill_limit(spill_dir: Option<&Path>) -> u64 {
    const MOST: u64 = 100 << 30;
    let free = spill_dir.and_then(free_space).unwrap_or(MOST * 4);
    (free / 4).min(MOST)
}

/// `[sql] column_cache_disk` unless set: a tenth of the disk space free where kept columns
/// go, at most [`basin_sql::COLUMN_CACHE_DISK`]: a cache must not be what fills a disk.
pub(crate) fn default_column_cache_disk(column_dir: Option<&Path>) -> u64 {
    let most = basin_sql::COLUMN_CACHE_DISK;
    let free = column_dir.and_then(free_space).unwrap_or(most * 10);
    (free / 10).min(most)
}

/// The bytes free to this user on the file system holding `path` (or the nearest folder
/// above it that exists).
pub fn free_space(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stats = rustix::fs::statvfs(existing).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// `[sql]`, resolved; `setting` names a setting in messages.
pub(super) fn resolve(
    q: &SqlSection,
    dir: &Path,
    setting: &dyn Fn(&str, &str) -> String,
) -> Result<basin_sql::SqlLimits> {
    let mut sql = basin_sql::SqlLimits::default();
    if let Some(v) = &q.memory_limit {
        sql.memory_limit = v.bytes(&setting("sql", "memory_limit"))?;
    }
    if let Some(v) = &q.query_memory_limit {
        sql.query_memory_limit = v.bytes(&setting("sql", "query_memory_limit"))?;
    }
    sql.query_memory_limit = sql.query_memory_limit.min(sql.memory_limit);
    if let Some(v) = &q.query_timeout {
        sql.query_timeout = v.limit(&setting("sql", "query_timeout"))?;
    }
    // Spilled data goes under the lakehouse unless said otherwise: the system's temporary
    // folder is often memory (tmpfs), where spilling would only move the pressure.
    sql.spill_dir = Some(match &q.spill_dir {
        Some(spill) => dir.join(spill),
        None => dir.join(super::BASIN_DIR).join("spill"),
    });
    sql.spill_limit = match &q.spill_limit {
        Some(v) => v.bytes(&setting("sql", "spill_limit"))?,
        None => default_spill_limit(sql.spill_dir.as_deref()),
    };
    if let Some(engine) = &q.engine {
        sql.engine = engine.parse().map_err(|e: String| {
            Error::invalid(format!("basin.toml: [sql] engine: {e}"))
                .with_hint("`auto` sends big queries to the cluster's executors")
        })?;
    }
    if let Some(v) = &q.distributed_threshold {
        sql.distributed_threshold = v.bytes(&setting("sql", "distributed_threshold"))?;
    }
    if let Some(n) = q.table_cache {
        sql.table_cache = n;
    }
    if let Some(v) = &q.result_cache {
        sql.result_cache = v.bytes(&setting("sql", "result_cache"))?;
    }
    if let Some(v) = &q.max_metadata_size {
        // Under 1 MiB would refuse the metadata of a table with a short history.
        sql.max_metadata_size = v.in_memory(&setting("sql", "max_metadata_size"), 1 << 20)? as u64;
    }
    if let Some(v) = &q.column_cache {
        sql.column_cache = v.bytes(&setting("sql", "column_cache"))?;
    }
    // Kept columns go under the lakehouse, beside what spills.
    sql.column_dir = Some(dir.join(super::BASIN_DIR).join("columns"));
    sql.column_cache_disk = match &q.column_cache_disk {
        Some(v) => v.bytes(&setting("sql", "column_cache_disk"))?,
        None => default_column_cache_disk(sql.column_dir.as_deref()),
    };
    if let Some(v) = &q.max_statement_size {
        sql.statement.max_size = v.in_memory(&setting("sql", "max_statement_size"), 1 << 10)?;
    }
    if let Some(n) = q.max_expression_depth {
        sql.statement.max_depth = n.max(16);
    }
    if let Some(n) = q.parse_steps_per_token {
        sql.statement.parse_steps_per_token = n.max(4);
    }
    if let Some(n) = q.max_joins {
        sql.statement.max_joins = n.max(1);
    }
    if let Some(n) = q.max_plan_nodes {
        // A query of a few tables is a few dozen operators.
        sql.statement.max_plan_nodes = n.max(100);
    }
    if let Some(n) = q.planner_threads {
        sql.planner_threads = n.max(1);
    }
    if let Some(v) = &q.planner_stack {
        // Less than 8 MiB would not hold the default bounds in a debug build.
        sql.planner_stack = v.in_memory(&setting("sql", "planner_stack"), 8 << 20)?;
    }
    if let Some(n) = q.query_threads {
        sql.query_threads = n.max(1);
    }
    if let Some(n) = q.query_nice {
        sql.query_nice = n.clamp(0, 19);
    }
    if let Some(n) = q.s3_reads {
        sql.s3_reads = n.max(1);
    }
    if let Some(b) = &q.ballista {
        ballista(b, &mut sql.ballista, setting)?;
    }
    for (key, value) in q.datafusion.iter().flatten() {
        let key = if key.starts_with("datafusion.") {
            key.clone()
        } else {
            format!("datafusion.{key}")
        };
        let value = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        sql.set_option(&key, &value).map_err(|e| {
            Error::invalid(format!("basin.toml: [sql.datafusion] {key}: {e}")).with_hint(
                "the names and values are DataFusion's: https://datafusion.apache.org/user-guide/configs.html",
            )
        })?;
    }
    Ok(sql)
}

/// `[sql.ballista]`, resolved into `out`.
fn ballista(
    b: &BallistaSection,
    out: &mut basin_sql::BallistaSettings,
    setting: &dyn Fn(&str, &str) -> String,
) -> Result<()> {
    let address = |name: &str, value: &str| {
        if value
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        {
            Ok(value.to_string())
        } else {
            Err(Error::invalid(format!(
                "basin.toml: [sql.ballista] {name}: `{value}` is not HOST:PORT"
            ))
            .with_hint("e.g. \"10.0.0.5:50050\" (port 0 picks a free one where this node listens)"))
        }
    };
    if let Some(v) = &b.scheduler {
        out.scheduler = Some(address("scheduler", v)?);
    }
    if let Some(v) = &b.executor_listen {
        out.executor_listen = address("executor_listen", v)?;
    }
    out.executor_advertise = b.executor_advertise.clone();
    if let Some(n) = b.executor_slots {
        out.executor_slots = n.max(1);
    }
    if let Some(v) = &b.executor_timeout {
        let name = setting("sql.ballista", "executor_timeout");
        out.executor_timeout = v
            .limit(&name)?
            .filter(|d| *d >= std::time::Duration::from_secs(1))
            .ok_or_else(|| {
                Error::invalid(format!("{name}: at least one second")).with_hint(
                    "executors poll the scheduler many times a second; \"30s\" is the default",
                )
            })?;
    }
    Ok(())
}
