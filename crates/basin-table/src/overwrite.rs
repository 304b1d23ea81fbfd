//! The snapshots iceberg-rust 0.10 lacks: an `overwrite` that replaces every live data file
//! of a table with new ones, and a `replace` (compaction) that swaps some files for others
//! holding the same rows, in one snapshot. Written on the crate's public manifest builders.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{
    DataFile, MAIN_BRANCH, ManifestContentType, ManifestFile, ManifestListWriter,
    ManifestWriterBuilder, Operation, Snapshot, SnapshotReference, SnapshotRetention,
    SnapshotSummaryCollector, Summary, UNASSIGNED_SEQUENCE_NUMBER,
};
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};

/// The requirements and updates of a snapshot that replaces live data files of `table` with
/// `files`: all of them (an `overwrite`), or only those in `only` (a `replace`, which keeps
/// the others, e.g. appended while a compaction ran; every file of `only` must still be
/// live). The manifests it needs are written; nothing is committed. `operation` names the
/// snapshot: `overwrite` when rows change, `replace` when the same rows are rewritten.
pub(crate) async fn rewrite_updates(
    table: &Table,
    files: Vec<DataFile>,
    properties: HashMap<String, String>,
    only: Option<&HashSet<String>>,
    operation: Operation,
) -> iceberg::Result<(Vec<TableRequirement>, Vec<TableUpdate>)> {
    let metadata = table.metadata();
    let file_io = table.file_io();
    // One spec for the added and the deleted manifest: tables whose files were written under
    // several partition specs (evolved by another engine) are not replaced yet.
    if metadata.format_version() != iceberg::spec::FormatVersion::V2
        || metadata.partition_specs_iter().len() > 1
    {
        return Err(iceberg::Error::new(
            iceberg::ErrorKind::FeatureUnsupported,
            "replacing the rows of a table that is not format v2 with one partition spec",
        ));
    }
    let commit_id = uuid::Uuid::now_v7();
    let snapshot_id = new_snapshot_id(table, &commit_id);
    let sequence_number = metadata.next_sequence_number();
    let parent = metadata.current_snapshot_id();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let metadata_dir = format!("{}/metadata", metadata.location());

    let mut summary = SnapshotSummaryCollector::default();
    let mut manifests: Vec<ManifestFile> = Vec::new();
    let (mut total_records, mut total_size) = (0u64, 0u64);

    if !files.is_empty() {
        let output = file_io.new_output(format!("{metadata_dir}/{commit_id}-m0.avro"))?;
        let mut added = ManifestWriterBuilder::new(
            output,
            Some(snapshot_id),
            schema.clone(),
            spec.as_ref().clone(),
        )
        .build_v2_data();
        for file in &files {
            summary.add_file(file, schema.clone(), spec.clone());
            total_records += file.record_count();
            total_size += file.file_size_in_bytes();
            added.add_file(file.clone(), UNASSIGNED_SEQUENCE_NUMBER)?;
        }
        manifests.push(added.write_manifest_file().await?);
    }

    // Mark the replaced files deleted, so incremental readers see what this snapshot removed;
    // the files a `replace` keeps go on as they were.
    let mut kept_files = 0usize;
    let mut replaced = 0usize;
    if let Some(current) = metadata.current_snapshot() {
        let output = file_io.new_output(format!("{metadata_dir}/{commit_id}-m1.avro"))?;
        let mut deleted = ManifestWriterBuilder::new(
            output,
            Some(snapshot_id),
            schema.clone(),
            spec.as_ref().clone(),
        )
        .build_v2_data();
        let output = file_io.new_output(format!("{metadata_dir}/{commit_id}-m2.avro"))?;
        let mut kept = ManifestWriterBuilder::new(
            output,
            Some(snapshot_id),
            schema.clone(),
            spec.as_ref().clone(),
        )
        .build_v2_data();
        let (mut any_deleted, mut any_kept) = (false, false);
        for manifest_file in table.manifest_list_reader(current).load().await?.entries() {
            if manifest_file.content != ManifestContentType::Data {
                if only.is_some() {
                    return Err(iceberg::Error::new(
                        iceberg::ErrorKind::FeatureUnsupported,
                        "compacting a table with delete files",
                    ));
                }
                continue;
            }
            // A manifest of files an earlier snapshot deleted belongs to that snapshot alone
            // (readers of this one never see its entries): carried on, every replace of a
            // table would read all the ones before it.
            if manifest_file.added_files_count == Some(0)
                && manifest_file.existing_files_count == Some(0)
            {
                continue;
            }
            let manifest = manifest_file.load_manifest(file_io).await?;
            let alive: Vec<_> = manifest.entries().iter().filter(|e| e.is_alive()).collect();
            if alive.is_empty() {
                continue;
            }
            let touched = |path: &str| only.is_none_or(|o| o.contains(path));
            if !alive.iter().any(|e| touched(e.data_file().file_path())) {
                // Nothing of this manifest is replaced: it goes on unchanged.
                for entry in &alive {
                    total_records += entry.data_file().record_count();
                    total_size += entry.data_file().file_size_in_bytes();
                    kept_files += 1;
                }
                manifests.push(manifest_file.clone());
                continue;
            }
            for entry in alive {
                let sequence = entry
                    .sequence_number()
                    .unwrap_or(manifest_file.sequence_number);
                if touched(entry.data_file().file_path()) {
                    summary.remove_file(entry.data_file(), schema.clone(), spec.clone());
                    deleted.add_delete_file(
                        entry.data_file().clone(),
                        sequence,
                        entry.file_sequence_number,
                    )?;
                    any_deleted = true;
                    replaced += 1;
                } else {
                    total_records += entry.data_file().record_count();
                    total_size += entry.data_file().file_size_in_bytes();
                    kept_files += 1;
                    kept.add_existing_file(
                        entry.data_file().clone(),
                        entry
                            .snapshot_id()
                            .unwrap_or(manifest_file.added_snapshot_id),
                        sequence,
                        entry.file_sequence_number,
                    )?;
                    any_kept = true;
                }
            }
        }
        if any_deleted {
            manifests.push(deleted.write_manifest_file().await?);
        }
        if any_kept {
            manifests.push(kept.write_manifest_file().await?);
        }
    }
    if let Some(only) = only
        && replaced != only.len()
    {
        return Err(iceberg::Error::new(
            iceberg::ErrorKind::CatalogCommitConflicts,
            "files to rewrite were replaced or removed by another writer meanwhile",
        ));
    }

    let list_path = format!("{metadata_dir}/snap-{snapshot_id}-0-{commit_id}.avro");
    let mut list = ManifestListWriter::v2(
        file_io.new_output(&list_path)?.writer().await?,
        snapshot_id,
        parent,
        sequence_number,
    );
    list.add_manifests(manifests.into_iter())?;
    list.close().await?;

    let mut summary_properties = summary.build();
    summary_properties.insert("total-records".into(), total_records.to_string());
    summary_properties.insert(
        "total-data-files".into(),
        (files.len() + kept_files).to_string(),
    );
    summary_properties.insert("total-files-size".into(), total_size.to_string());
    summary_properties.insert("total-delete-files".into(), "0".into());
    summary_properties.insert("total-position-deletes".into(), "0".into());
    summary_properties.insert("total-equality-deletes".into(), "0".into());
    summary_properties.extend(properties);

    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent)
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(
            chrono::Utc::now()
                .timestamp_millis()
                .max(metadata.last_updated_ms()),
        )
        .with_manifest_list(list_path)
        .with_schema_id(metadata.current_schema_id())
        .with_summary(Summary {
            operation,
            additional_properties: summary_properties,
        })
        .build();
    let requirements = vec![
        TableRequirement::UuidMatch {
            uuid: metadata.uuid(),
        },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: parent,
        },
    ];
    let updates = vec![
        TableUpdate::AddSnapshot { snapshot },
        TableUpdate::SetSnapshotRef {
            ref_name: MAIN_BRANCH.to_string(),
            reference: SnapshotReference::new(
                snapshot_id,
                SnapshotRetention::branch(None, None, None),
            ),
        },
    ];
    Ok((requirements, updates))
}

/// A positive snapshot id not used by the table yet.
fn new_snapshot_id(table: &Table, seed: &uuid::Uuid) -> i64 {
    let (hi, lo) = seed.as_u64_pair();
    let mut id = ((hi ^ lo) & (i64::MAX as u64)) as i64;
    while table.metadata().snapshot_by_id(id).is_some() {
        id = id.wrapping_add(1) & i64::MAX;
    }
    id
}
