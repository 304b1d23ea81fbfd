//! The snapshots iceberg-rust 0.10 lacks: an `overwrite` that replaces every live data file
//! of a table with new ones, and a `replace` (compaction) that swaps some files for others
//! holding the same rows, in one snapshot. Written on the crate's public manifest builders.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{
    DataFile, MAIN_BRANCH, ManifestContentType, ManifestFile, ManifestListWriter, ManifestWriter,
    ManifestWriterBuilder, Operation, PartitionSpecRef, SchemaRef, Snapshot, SnapshotRef,
    SnapshotReference, SnapshotRetention, SnapshotSummaryCollector, Summary,
    UNASSIGNED_SEQUENCE_NUMBER,
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
    let rewrite = Rewrite::new(table);
    let mut totals = Totals::default();
    let mut manifests: Vec<ManifestFile> = Vec::new();
    manifests.extend(rewrite.added_manifest(&files, &mut totals).await?);
    if let Some(current) = metadata.current_snapshot() {
        manifests.extend(
            rewrite
                .current_manifests(current, only, &mut totals)
                .await?,
        );
    }
    if let Some(only) = only
        && totals.replaced != only.len()
    {
        return Err(iceberg::Error::new(
            iceberg::ErrorKind::CatalogCommitConflicts,
            "files to rewrite were replaced or removed by another writer meanwhile",
        ));
    }
    let list_path = rewrite.write_manifest_list(manifests).await?;
    let additional_properties = totals.into_summary(files.len(), properties);
    let snapshot = rewrite.snapshot(
        list_path,
        Summary {
            operation,
            additional_properties,
        },
    );
    Ok(rewrite.requirements_and_updates(snapshot))
}

/// One rewrite's new snapshot: its ids, and where and in what shape its manifests go.
struct Rewrite<'a> {
    table: &'a Table,
    commit_id: uuid::Uuid,
    snapshot_id: i64,
    parent: Option<i64>,
    sequence_number: i64,
    schema: SchemaRef,
    spec: PartitionSpecRef,
    metadata_dir: String,
}

/// What the new snapshot holds and what it removed, counted as its manifests are written.
#[derive(Default)]
struct Totals {
    summary: SnapshotSummaryCollector,
    records: u64,
    size: u64,
    /// Live files the snapshot keeps from its parent.
    kept_files: usize,
    /// Live files of the parent it marks deleted.
    replaced: usize,
}

impl Totals {
    fn keep(&mut self, file: &DataFile) {
        self.records += file.record_count();
        self.size += file.file_size_in_bytes();
        self.kept_files += 1;
    }

    /// The snapshot summary's properties: what the collector counted, the table's totals
    /// (`added` new files plus those kept), then the caller's `properties`.
    fn into_summary(
        self,
        added: usize,
        properties: HashMap<String, String>,
    ) -> HashMap<String, String> {
        let mut summary = self.summary.build();
        summary.insert("total-records".into(), self.records.to_string());
        summary.insert(
            "total-data-files".into(),
            (added + self.kept_files).to_string(),
        );
        summary.insert("total-files-size".into(), self.size.to_string());
        summary.insert("total-delete-files".into(), "0".into());
        summary.insert("total-position-deletes".into(), "0".into());
        summary.insert("total-equality-deletes".into(), "0".into());
        summary.extend(properties);
        summary
    }
}

impl<'a> Rewrite<'a> {
    fn new(table: &'a Table) -> Self {
        let metadata = table.metadata();
        let commit_id = uuid::Uuid::now_v7();
        Self {
            table,
            commit_id,
            snapshot_id: new_snapshot_id(table, &commit_id),
            parent: metadata.current_snapshot_id(),
            sequence_number: metadata.next_sequence_number(),
            schema: metadata.current_schema().clone(),
            spec: metadata.default_partition_spec().clone(),
            metadata_dir: format!("{}/metadata", metadata.location()),
        }
    }

    /// A writer of the data manifest `{commit_id}-{name}.avro`, written by this snapshot.
    fn manifest_writer(&self, name: &str) -> iceberg::Result<ManifestWriter> {
        let output = self.table.file_io().new_output(format!(
            "{}/{}-{name}.avro",
            self.metadata_dir, self.commit_id
        ))?;
        Ok(ManifestWriterBuilder::new(
            output,
            Some(self.snapshot_id),
            self.schema.clone(),
            self.spec.as_ref().clone(),
        )
        .build_v2_data())
    }

    /// The manifest adding `files` (none when there are none).
    async fn added_manifest(
        &self,
        files: &[DataFile],
        totals: &mut Totals,
    ) -> iceberg::Result<Option<ManifestFile>> {
        if files.is_empty() {
            return Ok(None);
        }
        let mut added = self.manifest_writer("m0")?;
        for file in files {
            totals
                .summary
                .add_file(file, self.schema.clone(), self.spec.clone());
            totals.records += file.record_count();
            totals.size += file.file_size_in_bytes();
            added.add_file(file.clone(), UNASSIGNED_SEQUENCE_NUMBER)?;
        }
        Ok(Some(added.write_manifest_file().await?))
    }

    /// The manifests carrying `current`'s live files over: those with nothing replaced as
    /// they are, then one marking the replaced files deleted, so incremental readers see
    /// what this snapshot removed, and one with the files a `replace` keeps from manifests
    /// it touched.
    async fn current_manifests(
        &self,
        current: &SnapshotRef,
        only: Option<&HashSet<String>>,
        totals: &mut Totals,
    ) -> iceberg::Result<Vec<ManifestFile>> {
        let file_io = self.table.file_io();
        let mut manifests = Vec::new();
        let mut deleted = self.manifest_writer("m1")?;
        let mut kept = self.manifest_writer("m2")?;
        let (mut any_deleted, mut any_kept) = (false, false);
        let list = self.table.manifest_list_reader(current).load().await?;
        for manifest_file in list.entries() {
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
                    totals.keep(entry.data_file());
                }
                manifests.push(manifest_file.clone());
                continue;
            }
            for entry in alive {
                let sequence = entry
                    .sequence_number()
                    .unwrap_or(manifest_file.sequence_number);
                if touched(entry.data_file().file_path()) {
                    totals.summary.remove_file(
                        entry.data_file(),
                        self.schema.clone(),
                        self.spec.clone(),
                    );
                    deleted.add_delete_file(
                        entry.data_file().clone(),
                        sequence,
                        entry.file_sequence_number,
                    )?;
                    any_deleted = true;
                    totals.replaced += 1;
                } else {
                    totals.keep(entry.data_file());
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
        Ok(manifests)
    }

    /// Writes the snapshot's manifest list naming `manifests`; returns its path.
    async fn write_manifest_list(&self, manifests: Vec<ManifestFile>) -> iceberg::Result<String> {
        let list_path = format!(
            "{}/snap-{}-0-{}.avro",
            self.metadata_dir, self.snapshot_id, self.commit_id
        );
        let mut list = ManifestListWriter::v2(
            self.table
                .file_io()
                .new_output(&list_path)?
                .writer()
                .await?,
            self.snapshot_id,
            self.parent,
            self.sequence_number,
        );
        list.add_manifests(manifests.into_iter())?;
        list.close().await?;
        Ok(list_path)
    }

    fn snapshot(&self, manifest_list: String, summary: Summary) -> Snapshot {
        let metadata = self.table.metadata();
        Snapshot::builder()
            .with_snapshot_id(self.snapshot_id)
            .with_parent_snapshot_id(self.parent)
            .with_sequence_number(self.sequence_number)
            .with_timestamp_ms(
                chrono::Utc::now()
                    .timestamp_millis()
                    .max(metadata.last_updated_ms()),
            )
            .with_manifest_list(manifest_list)
            .with_schema_id(metadata.current_schema_id())
            .with_summary(summary)
            .build()
    }

    /// Adds `snapshot` and moves `main` to it, if the table and its `main` are still those
    /// this rewrite read.
    fn requirements_and_updates(
        &self,
        snapshot: Snapshot,
    ) -> (Vec<TableRequirement>, Vec<TableUpdate>) {
        let requirements = vec![
            TableRequirement::UuidMatch {
                uuid: self.table.metadata().uuid(),
            },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: MAIN_BRANCH.to_string(),
                snapshot_id: self.parent,
            },
        ];
        let updates = vec![
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: MAIN_BRANCH.to_string(),
                reference: SnapshotReference::new(
                    self.snapshot_id,
                    SnapshotRetention::branch(None, None, None),
                ),
            },
        ];
        (requirements, updates)
    }
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
