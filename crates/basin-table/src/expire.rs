//! Snapshot expiry: which snapshots of a table's metadata a retention policy lets go, and the
//! table update that drops them (iceberg's own `RemoveSnapshots`, which also drops their
//! snapshot-log entries and any Iceberg ref left pointing at nothing).
//!
//! A snapshot is expired when it is older than the policy's age, and it is none of: the
//! current snapshot, one of the last `retain_last` snapshots of the current snapshot's
//! ancestry (the current one counted), a snapshot an Iceberg ref of the metadata points at,
//! or a snapshot the caller protects (the ones Basin's tags read).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use iceberg::spec::{TableMetadata, TableProperties};
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};
use serde::Serialize;

use crate::error::{Error, Result};

/// How long a branch keeps the snapshots of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ExpirePolicy {
    /// Snapshots older than this may go; `None`: none ever does.
    pub max_age: Option<Duration>,
    /// The newest snapshots of the current ancestry kept whatever their age (at least 1: the
    /// current snapshot is always kept).
    pub retain_last: usize,
}

impl ExpirePolicy {
    /// The policy for one table: `default` (the lakehouse's `[maintenance]`), overridden by
    /// the table's `history.expire.max-snapshot-age-ms` and
    /// `history.expire.min-snapshots-to-keep` properties.
    pub fn for_table(default: ExpirePolicy, metadata: &TableMetadata) -> Result<Self> {
        Self::with_properties(default, metadata.properties())
    }

    fn with_properties(
        default: ExpirePolicy,
        properties: &HashMap<String, String>,
    ) -> Result<Self> {
        let mut policy = default;
        let age = TableProperties::PROPERTY_MAX_SNAPSHOT_AGE_MS;
        if let Some(text) = properties.get(age) {
            let ms: u64 = text.trim().parse().map_err(|_| bad_property(age, text))?;
            policy.max_age = Some(Duration::from_millis(ms));
        }
        let keep = TableProperties::PROPERTY_MIN_SNAPSHOTS_TO_KEEP;
        if let Some(text) = properties.get(keep) {
            policy.retain_last = text.trim().parse().map_err(|_| bad_property(keep, text))?;
        }
        Ok(policy)
    }
}

fn bad_property(name: &str, value: &str) -> Error {
    Error::invalid(format!(
        "the table property `{name}` is `{value}`, not a whole number"
    ))
    .with_hint(format!(
        "set it to a number (milliseconds for the age), or remove it to use [maintenance]; \
         `basin table expire` flags override it too ({name})"
    ))
}

/// The snapshots `policy` expires from `metadata` at `now_ms`, never one in `protected`.
/// Oldest first.
pub fn snapshots_to_expire(
    metadata: &TableMetadata,
    policy: &ExpirePolicy,
    protected: &HashSet<i64>,
    now_ms: i64,
) -> Vec<i64> {
    let Some(max_age) = policy.max_age else {
        return Vec::new();
    };
    let cutoff = now_ms.saturating_sub(max_age.as_millis().min(i64::MAX as u128) as i64);
    let mut kept: HashSet<i64> = protected.clone();
    kept.extend(ref_snapshots(metadata));
    // The current snapshot and its nearest ancestors.
    let mut cursor = metadata.current_snapshot_id();
    let mut counted = 0;
    while let Some(id) = cursor
        && counted < policy.retain_last.max(1)
    {
        kept.insert(id);
        counted += 1;
        cursor = metadata
            .snapshot_by_id(id)
            .and_then(|s| s.parent_snapshot_id());
    }
    let mut expired: Vec<_> = metadata
        .snapshots()
        .filter(|s| s.timestamp_ms() < cutoff && !kept.contains(&s.snapshot_id()))
        .map(|s| (s.timestamp_ms(), s.snapshot_id()))
        .collect();
    expired.sort();
    expired.into_iter().map(|(_, id)| id).collect()
}

/// The snapshots the metadata's Iceberg refs point at (`main`, and any branch or tag an
/// engine made through the REST catalog). iceberg 0.10 has no accessor for the refs, so they
/// are read from the metadata's own JSON form.
fn ref_snapshots(metadata: &TableMetadata) -> HashSet<i64> {
    let mut ids: HashSet<i64> = metadata.current_snapshot_id().into_iter().collect();
    if let Ok(json) = serde_json::to_value(metadata)
        && let Some(refs) = json.get("refs").and_then(|r| r.as_object())
    {
        ids.extend(
            refs.values()
                .filter_map(|r| r.get("snapshot-id").and_then(|id| id.as_i64())),
        );
    }
    ids
}

/// The requirements and updates that drop `expired` from `table`: the ones it still has. The
/// table must be the same one, and none of them may have become its current snapshot or the
/// target of one of its refs (a writer that rolled back meanwhile): that is a conflict.
pub(crate) fn expire_updates(
    table: &Table,
    expired: &HashSet<i64>,
) -> Result<(Vec<TableRequirement>, Vec<TableUpdate>)> {
    let metadata = table.metadata();
    let in_use = ref_snapshots(metadata);
    if let Some(id) = expired.iter().find(|id| in_use.contains(id)) {
        return Err(Error::new(
            crate::ErrorKind::Conflict,
            format!(
                "snapshot {id} of `{}` became current meanwhile; it is not expired",
                table.identifier()
            ),
        )
        .with_hint("run `basin table expire` again: it will decide on the table as it is now"));
    }
    let mut ids: Vec<i64> = metadata
        .snapshots()
        .map(|s| s.snapshot_id())
        .filter(|id| expired.contains(id))
        .collect();
    ids.sort();
    let mut updates = Vec::new();
    for id in &ids {
        if metadata.statistics_for_snapshot(*id).is_some() {
            updates.push(TableUpdate::RemoveStatistics { snapshot_id: *id });
        }
        if metadata.partition_statistics_for_snapshot(*id).is_some() {
            updates.push(TableUpdate::RemovePartitionStatistics { snapshot_id: *id });
        }
    }
    updates.push(TableUpdate::RemoveSnapshots { snapshot_ids: ids });
    let requirements = vec![TableRequirement::UuidMatch {
        uuid: metadata.uuid(),
    }];
    Ok((requirements, updates))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(days: u64, retain_last: usize) -> ExpirePolicy {
        ExpirePolicy {
            max_age: Some(Duration::from_secs(days * 86_400)),
            retain_last,
        }
    }

    #[test]
    fn table_properties_override_the_lakehouse_policy() {
        let properties = HashMap::from([
            (
                "history.expire.max-snapshot-age-ms".to_string(),
                "60000".to_string(),
            ),
            (
                "history.expire.min-snapshots-to-keep".to_string(),
                "3".to_string(),
            ),
        ]);
        let got = ExpirePolicy::with_properties(policy(7, 1), &properties).unwrap();
        assert_eq!(got.max_age, Some(Duration::from_secs(60)));
        assert_eq!(got.retain_last, 3);
        assert_eq!(
            ExpirePolicy::with_properties(policy(7, 1), &HashMap::new()).unwrap(),
            policy(7, 1)
        );
    }

    #[test]
    fn a_table_property_that_is_no_number_is_refused_by_name() {
        let properties = HashMap::from([(
            "history.expire.max-snapshot-age-ms".to_string(),
            "7d".to_string(),
        )]);
        let err = ExpirePolicy::with_properties(policy(7, 1), &properties).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert!(
            err.to_string()
                .contains("history.expire.max-snapshot-age-ms")
        );
    }
}
