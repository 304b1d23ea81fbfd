//! Merging two sides that both only appended to one table: the target keeps its snapshots and
//! gains one more holding the files the source appended.

use std::collections::HashSet;

use iceberg::spec::{DataFile, ManifestStatus, Operation};
use iceberg::table::Table;

/// The data files `side` appended since `base`, or `None` if `side` did anything but append
/// (overwrite, schema or partition change, or a history that does not descend from `base`).
pub async fn appended_files_since(
    base: &Table,
    side: &Table,
) -> iceberg::Result<Option<Vec<DataFile>>> {
    let (b, s) = (base.metadata(), side.metadata());
    if b.uuid() != s.uuid()
        || b.current_schema_id() != s.current_schema_id()
        || b.default_partition_spec_id() != s.default_partition_spec_id()
    {
        return Ok(None);
    }
    let stop = b.current_snapshot_id();
    let mut new_snapshots = HashSet::new();
    let mut cursor = s.current_snapshot_id();
    while cursor != stop {
        let Some(id) = cursor else { return Ok(None) }; // reached the start without meeting base
        let Some(snapshot) = s.snapshot_by_id(id) else {
            return Ok(None);
        };
        if snapshot.summary().operation != Operation::Append {
            return Ok(None);
        }
        new_snapshots.insert(id);
        cursor = snapshot.parent_snapshot_id();
    }
    let mut files = Vec::new();
    let Some(current) = s.current_snapshot() else {
        return Ok(Some(files));
    };
    for manifest_file in side.manifest_list_reader(current).load().await?.entries() {
        if !new_snapshots.contains(&manifest_file.added_snapshot_id) {
            continue;
        }
        let manifest = manifest_file.load_manifest(side.file_io()).await?;
        for entry in manifest.entries() {
            let added_here = entry
                .snapshot_id()
                .is_some_and(|id| new_snapshots.contains(&id));
            if entry.status() == ManifestStatus::Added && added_here {
                files.push(entry.data_file().clone());
            }
        }
    }
    Ok(Some(files))
}
