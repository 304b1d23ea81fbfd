//! Merging two sides that both only appended to one table: the target keeps its snapshots and
//! gains one more holding the files the source appended.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{DataFile, ManifestContentType, Operation};
use iceberg::table::Table;

/// Snapshot property naming the source snapshot whose appends a merge snapshot carries, so a
/// later merge from the same branch knows the target already holds them.
pub(crate) const MERGED_SNAPSHOT: &str = "basin.merged-snapshot-id";

/// Whether `side` is still the table `base` was (same uuid), with the same current schema
/// and partition spec: what both sides' files must share to be combined in one snapshot,
/// by a merge or by a retried commit.
pub(crate) fn same_shape(base: &Table, side: &Table) -> bool {
    let (b, s) = (base.metadata(), side.metadata());
    b.uuid() == s.uuid()
        && b.current_schema_id() == s.current_schema_id()
        && b.default_partition_spec_id() == s.default_partition_spec_id()
}

/// The snapshots `side` added since `base`, or `None` if `side` did anything but append
/// (overwrite, schema or partition change, or a history that does not descend from `base`).
/// Reads table metadata only.
pub fn appended_snapshots_since(base: &Table, side: &Table) -> Option<HashSet<i64>> {
    if !same_shape(base, side) {
        return None;
    }
    let (b, s) = (base.metadata(), side.metadata());
    let stop = b.current_snapshot_id();
    let stop_text = stop.map(|id| id.to_string());
    let mut added = HashSet::new();
    let mut cursor = s.current_snapshot_id();
    while cursor != stop {
        let snapshot = s.snapshot_by_id(cursor?)?; // `None`: began without meeting base
        let summary = snapshot.summary();
        if summary.operation != Operation::Append {
            return None;
        }
        added.insert(snapshot.snapshot_id());
        // A merge snapshot that brought base's appends in stands for base itself.
        if stop_text.is_some()
            && summary.additional_properties.get(MERGED_SNAPSHOT) == stop_text.as_ref()
        {
            break;
        }
        cursor = snapshot.parent_snapshot_id();
    }
    Some(added)
}

/// The data files `side` appended since `base`, or `None` if it did anything else.
pub async fn appended_files_since(
    base: &Table,
    side: &Table,
) -> iceberg::Result<Option<Vec<DataFile>>> {
    let Some(added) = appended_snapshots_since(base, side) else {
        return Ok(None);
    };
    let mut files = Vec::new();
    let Some(current) = side.metadata().current_snapshot() else {
        return Ok(Some(files));
    };
    for manifest_file in side.manifest_list_reader(current).load().await?.entries() {
        // Manifest merging may carry an added file on as EXISTING in a later manifest, so
        // entries are matched by the snapshot that added them, whatever their status.
        if manifest_file.content != ManifestContentType::Data {
            continue;
        }
        let manifest = manifest_file.load_manifest(side.file_io()).await?;
        for entry in manifest.entries() {
            if entry.is_alive() && entry.snapshot_id().is_some_and(|id| added.contains(&id)) {
                files.push(entry.data_file().clone());
            }
        }
    }
    Ok(Some(files))
}

/// The data files a table's current snapshot reads, by path, with their row counts.
pub async fn live_data_files(table: &Table) -> iceberg::Result<HashMap<String, u64>> {
    let mut files = HashMap::new();
    let Some(current) = table.metadata().current_snapshot() else {
        return Ok(files);
    };
    for manifest_file in table.manifest_list_reader(current).load().await?.entries() {
        if manifest_file.content != ManifestContentType::Data {
            continue;
        }
        let manifest = manifest_file.load_manifest(table.file_io()).await?;
        for entry in manifest.entries() {
            if entry.is_alive() {
                let file = entry.data_file();
                files.insert(file.file_path().to_string(), file.record_count());
            }
        }
    }
    Ok(files)
}

/// The files a full scan of `table`'s current snapshot reads, as iceberg plans them; with
/// `filter`, only those whose column bounds in the manifests may match it.
pub async fn planned_files(
    table: &Table,
    filter: Option<iceberg::expr::Predicate>,
) -> crate::Result<Vec<iceberg::scan::FileScanTask>> {
    use futures::TryStreamExt;
    let context = format!("cannot list the files of `{}`", table.identifier());
    let mut scan = table.scan().select_all();
    if let Some(predicate) = filter {
        scan = scan.with_filter(predicate);
    }
    scan.build()
        .map_err(crate::from_iceberg(&context))?
        .plan_files()
        .await
        .map_err(crate::from_iceberg(&context))?
        .try_collect()
        .await
        .map_err(crate::from_iceberg(&context))
}
