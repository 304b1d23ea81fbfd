//! The change feed's file side: which files two snapshots of one table differ by, and in
//! which snapshot of the later side's history each file appeared or disappeared.
//!
//! Rows live in data files, minus the rows their delete files remove. A data file read by
//! both sides with the same delete files holds the same rows on both, so only the others can
//! hold a change: the rows of the `removed` scan tasks (read as the earlier side reads them)
//! and of the `added` ones (as the later side does). Rows found in both are rewritten, not
//! changed (a compaction, a copy-on-write overwrite's untouched rows); basin-sql cancels
//! them out row by row.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::scan::{ArrowRecordBatchStream, FileScanTask};
use iceberg::spec::ManifestEntryRef;
use iceberg::table::Table;

use crate::{Result, from_iceberg};

/// One side of a change feed: a table's metadata and one of its snapshots (`None`: the table
/// has no rows there).
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub table: &'a Table,
    pub snapshot: Option<i64>,
}

impl<'a> Side<'a> {
    /// The table at its current snapshot.
    pub fn current(table: &'a Table) -> Self {
        Self {
            table,
            snapshot: table.metadata().current_snapshot_id(),
        }
    }
}

/// The files two sides of a table differ by.
#[derive(Debug, Default)]
pub struct FileChanges {
    /// The earlier side's scan tasks whose rows may be gone: data files the later side does
    /// not read, or reads with other delete files.
    pub removed: Vec<FileScanTask>,
    /// The later side's scan tasks whose rows may be new.
    pub added: Vec<FileScanTask>,
    /// The snapshot of the later side's history in which a file (data or delete) became
    /// live, for files that did after the earlier side's snapshot.
    pub appeared_in: HashMap<String, i64>,
    /// The snapshot of the later side's history in which a file stopped being live.
    pub disappeared_in: HashMap<String, i64>,
}

impl FileChanges {
    /// The snapshot that made the rows of `task` (an `added` one) new: the one that added
    /// its data file, or else the delete file it did not have before.
    pub fn added_by(&self, task: &FileScanTask) -> Option<i64> {
        self.appeared_in
            .get(&task.data_file_path)
            .or_else(|| {
                task.deletes
                    .iter()
                    .find_map(|d| self.appeared_in.get(&d.file_path))
            })
            .copied()
    }

    /// The snapshot that took the rows of `task` (a `removed` one) away: the one that
    /// removed its data file, or added a delete file to it.
    pub fn removed_by(&self, task: &FileScanTask) -> Option<i64> {
        if let Some(id) = self.disappeared_in.get(&task.data_file_path) {
            return Some(*id);
        }
        self.added
            .iter()
            .filter(|a| a.data_file_path == task.data_file_path)
            .find_map(|a| self.added_by(a))
    }
}

/// What differs between `before` and `after` (either may be absent: a table created or
/// dropped between them). Reads both sides' manifests, and those of every snapshot of
/// `after`'s history since it parted from `before`'s (for `appeared_in` and
/// `disappeared_in`); reads no data file.
pub async fn file_changes(
    before: Option<Side<'_>>,
    after: Option<Side<'_>>,
) -> Result<FileChanges> {
    let before_tasks = match before {
        Some(side) => tasks_at(side).await?,
        None => Vec::new(),
    };
    let after_tasks = match after {
        Some(side) => tasks_at(side).await?,
        None => Vec::new(),
    };
    let identity = |t: &FileScanTask| {
        let deletes: BTreeSet<&str> = t.deletes.iter().map(|d| d.file_path.as_str()).collect();
        (
            t.data_file_path.clone(),
            deletes.into_iter().map(str::to_string).collect::<Vec<_>>(),
        )
    };
    let before_ids: HashSet<_> = before_tasks.iter().map(identity).collect();
    let after_ids: HashSet<_> = after_tasks.iter().map(identity).collect();
    let mut changes = FileChanges {
        removed: before_tasks
            .into_iter()
            .filter(|t| !after_ids.contains(&identity(t)))
            .collect(),
        added: after_tasks
            .into_iter()
            .filter(|t| !before_ids.contains(&identity(t)))
            .collect(),
        ..FileChanges::default()
    };
    if let Some(after) = after
        && !(changes.removed.is_empty() && changes.added.is_empty())
    {
        attribute(&mut changes, before, after).await?;
    }
    Ok(changes)
}

/// Reads `tasks` of `table` as its snapshot's schema has them (columns by field id, delete
/// files applied, identity partition values filled in: `crate::constants`).
pub fn read_tasks(table: &Table, tasks: Vec<FileScanTask>) -> Result<ArrowRecordBatchStream> {
    let context = format!("cannot read the files of `{}`", table.identifier());
    let runtime = iceberg::Runtime::try_current().map_err(from_iceberg(&context))?;
    let spec = crate::constants::task_spec(table);
    let tasks = tasks
        .into_iter()
        .map(move |t| Ok(crate::constants::give_spec(t, &spec)));
    let stream = futures::stream::iter(tasks).boxed();
    let batches = ArrowReaderBuilder::new(table.file_io().clone(), runtime)
        .build()
        .read(stream)
        .map_err(from_iceberg(&context))?
        .stream();
    Ok(batches
        .and_then(|batch| {
            let plain = crate::constants::plain_batch(batch)
                .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string()));
            std::future::ready(plain)
        })
        .boxed())
}

async fn tasks_at(side: Side<'_>) -> Result<Vec<FileScanTask>> {
    let Some(snapshot) = side.snapshot else {
        return Ok(Vec::new());
    };
    let context = format!("cannot list the files of `{}`", side.table.identifier());
    side.table
        .scan()
        .snapshot_id(snapshot)
        .select_all()
        .build()
        .map_err(from_iceberg(&context))?
        .plan_files()
        .await
        .map_err(from_iceberg(&context))?
        .try_collect()
        .await
        .map_err(from_iceberg(&context))
}

/// Walks `after`'s history from where it parted from `before`'s (or its start) to its
/// snapshot, noting where each file became live and stopped being live.
async fn attribute(
    changes: &mut FileChanges,
    before: Option<Side<'_>>,
    after: Side<'_>,
) -> Result<()> {
    let metadata = after.table.metadata();
    let earlier: HashSet<i64> = match before {
        Some(side) if side.table.metadata().uuid() == metadata.uuid() => {
            ancestors(side.table, side.snapshot).into_iter().collect()
        }
        _ => HashSet::new(),
    };
    // Newest first, down to (not including) the last snapshot both histories share.
    let mut lineage = Vec::new();
    let mut fork = None;
    for id in ancestors(after.table, after.snapshot) {
        if earlier.contains(&id) {
            fork = Some(id);
            break;
        }
        lineage.push(id);
    }
    lineage.reverse();
    let mut manifests = ManifestCache::default();
    let mut live = match fork {
        Some(id) => manifests.live_files(after.table, id).await?,
        None => HashSet::new(),
    };
    for id in lineage {
        let now = manifests.live_files(after.table, id).await?;
        for path in now.difference(&live) {
            changes.appeared_in.entry(path.clone()).or_insert(id);
        }
        for path in live.difference(&now) {
            changes.disappeared_in.entry(path.clone()).or_insert(id);
        }
        live = now;
    }
    Ok(())
}

/// `snapshot` and its ancestors in `table`'s metadata, newest first.
fn ancestors(table: &Table, snapshot: Option<i64>) -> Vec<i64> {
    let metadata = table.metadata();
    let mut out = Vec::new();
    let mut cursor = snapshot;
    while let Some(id) = cursor {
        out.push(id);
        cursor = metadata
            .snapshot_by_id(id)
            .and_then(|s| s.parent_snapshot_id());
    }
    out
}

/// Manifests read once per walk: successive snapshots share most of theirs.
#[derive(Default)]
struct ManifestCache {
    entries: HashMap<String, Vec<ManifestEntryRef>>,
}

impl ManifestCache {
    /// The paths of the data and delete files live at `snapshot`.
    async fn live_files(&mut self, table: &Table, snapshot: i64) -> Result<HashSet<String>> {
        let context = format!("cannot read the manifests of `{}`", table.identifier());
        let mut live = HashSet::new();
        let Some(snapshot) = table.metadata().snapshot_by_id(snapshot) else {
            return Ok(live);
        };
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(from_iceberg(&context))?;
        for file in list.entries() {
            if !self.entries.contains_key(&file.manifest_path) {
                let manifest = file
                    .load_manifest(table.file_io())
                    .await
                    .map_err(from_iceberg(&context))?;
                self.entries
                    .insert(file.manifest_path.clone(), manifest.entries().to_vec());
            }
            for entry in &self.entries[&file.manifest_path] {
                if entry.is_alive() {
                    live.insert(entry.file_path().to_string());
                }
            }
        }
        Ok(live)
    }
}
