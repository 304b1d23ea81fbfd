//! Making a commit's files durable before the branch moves to it.
//!
//! A commit is durable only if everything its new `metadata.json` names survives a power
//! loss: the metadata file itself, the new snapshots' manifest lists and manifests, the data
//! files they add, and the folder entries that name them (a new table creates folders too).
//! iceberg-rust's local storage fsyncs a file written through a streaming writer (Parquet
//! data files) but not one written whole (`OutputFile::write`: manifests, manifest lists,
//! `metadata.json`), never a folder, and the files a REST client wrote were never Basin's to
//! sync. So after staging and before the catalog commit, every file the new metadata adds is
//! synced by path, with the folders above them up to the table's (the warehouse's, for a
//! new table). In S3 a completed PUT is durable, but a file may be gone before its commit (gc
//! removes unreferenced files older than `[maintenance] gc_grace`, and a write may run longer
//! than that), so each new file is looked up instead: a commit never names a missing file.
//!
//! Either way, the new snapshots' manifest lists, manifests and added data files must lie in
//! the warehouse: a client of the Iceberg REST door could otherwise commit a table whose
//! readers read any file the server can. Data files may also lie in a folder the operator
//! named in `[warehouse] external_locations` (files added in place). For a principal with grants of its own (not an
//! admin), they must also lie in the table's own folder.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use iceberg::spec::ManifestStatus;
use iceberg::table::Table;

use crate::bounded::check_size;
use crate::error::{Error, ErrorKind, Result, from_iceberg};
use crate::file_sync::FileSync;
use crate::warehouse::{Warehouse, table_of};

/// A local path for an iceberg location (`/p`, `file:/p`, `file:///p`); `None` elsewhere.
pub(crate) fn local_path(location: &str) -> Option<PathBuf> {
    let path = match location.strip_prefix("file://") {
        Some(rest) => rest,
        None => location.strip_prefix("file:").unwrap_or(location),
    };
    path.starts_with('/').then(|| PathBuf::from(path))
}

/// Every file `after` names that `before` (the table it was staged on; `None` for a new
/// table) did not: its metadata file, and for each new snapshot its manifest list, the
/// manifests its parent's list did not hold and the files those add. Each of those
/// manifests is read whole, and every file it names, whatever its entry's status, must lie
/// in the warehouse (a manifest a client wrote may name any file with any status), and each
/// new list and manifest no larger than `max_size` bytes ([`crate::bounded`]). Reads
/// manifests just written, so cached.
pub(crate) async fn new_files(
    before: Option<&Table>,
    after: &Table,
    warehouse: &Warehouse,
    max_size: u64,
) -> Result<Vec<String>> {
    let context = format!("cannot list the new files of `{}`", after.identifier());
    // Manifest lists and manifests are read here, before anything else trusts them: one a
    // client named outside the warehouse (`/dev/zero`, another table's folder) is refused.
    let inside = |path: &str| {
        if warehouse.contains(path) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{context}: {path} is outside the warehouse {}",
                warehouse.location()
            ))
            .with_hint("a snapshot's manifest list, manifests and data files must be files in the warehouse"))
        }
    };
    // Data files may also lie in the operator's external locations (files added in place).
    let data_inside = |path: &str| match warehouse.external_location_of(path) {
        Some(_) => Ok(()),
        None => inside(path),
    };
    // And a principal with grants of its own (a token over the Iceberg REST door) may name
    // only files in this table's own folder (whose location a door checked when it was set):
    // a manifest naming another table's data files would let it read them through this one.
    let restricted = basin_catalog::actor::current()
        .and_then(|actor| actor.grants)
        .is_some_and(|grants| !grants.is_admin());
    let own = format!("{}/", after.metadata().location().trim_end_matches('/'));
    let reachable = |path: &str| {
        if !restricted || path.starts_with(&own) {
            return Ok(());
        }
        let whose = match table_of(warehouse.location(), path) {
            Some((table, _)) => format!("a file of table `{table}`"),
            None => "a file of no table".to_string(),
        };
        Err(Error::new(
            ErrorKind::Forbidden,
            format!("{context}: {path} is {whose}, not of this table's folder {own}"),
        )
        .with_hint("a commit names only files in its own table's folder"))
    };
    let inside = |path: &str| inside(path).and_then(|()| reachable(path));
    let data_inside = |path: &str| data_inside(path).and_then(|()| reachable(path));
    let known: HashSet<i64> = before
        .map(|t| t.metadata().snapshots().map(|s| s.snapshot_id()).collect())
        .unwrap_or_default();
    let mut files = Vec::new();
    if let Some(location) = after.metadata_location() {
        files.push(location.to_string());
    }
    // Manifests read already, in this call or (for the parents' lists) before it.
    let mut seen: HashSet<String> = HashSet::new();
    for snapshot in after.metadata().snapshots() {
        let id = snapshot.snapshot_id();
        if known.contains(&id) {
            continue;
        }
        inside(snapshot.manifest_list())?;
        check_size(
            after.file_io(),
            snapshot.manifest_list(),
            max_size,
            &context,
        )
        .await?;
        files.push(snapshot.manifest_list().to_string());
        let list = after
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(from_iceberg(&context))?;
        // Carried over from the parent, whose commit checked and synced them.
        if let Some(before) = before
            && let Some(parent) = snapshot
                .parent_snapshot_id()
                .and_then(|p| before.metadata().snapshot_by_id(p))
        {
            let parents = before
                .manifest_list_reader(parent)
                .load()
                .await
                .map_err(from_iceberg(&context))?;
            seen.extend(parents.entries().iter().map(|m| m.manifest_path.clone()));
        }
        for manifest_file in list.entries() {
            if !seen.insert(manifest_file.manifest_path.clone()) {
                continue;
            }
            inside(&manifest_file.manifest_path)?;
            check_size(
                after.file_io(),
                &manifest_file.manifest_path,
                max_size,
                &context,
            )
            .await?;
            files.push(manifest_file.manifest_path.clone());
            let manifest = manifest_file
                .load_manifest(after.file_io())
                .await
                .map_err(from_iceberg(&context))?;
            for entry in manifest.entries() {
                data_inside(entry.file_path())?;
                let added_now = entry
                    .snapshot_id()
                    .is_some_and(|added| !known.contains(&added));
                if entry.status() == ManifestStatus::Added && added_now {
                    files.push(entry.file_path().to_string());
                }
            }
        }
    }
    Ok(files)
}

/// Syncs the local ones among `files` not in `synced` yet, and the folders from each file's
/// up to `top`, and remembers them in `synced` (a retried commit re-stages its metadata but
/// keeps its data files). `top` is the table's folder, whose new entries (a new partition's
/// folder) a commit may add; for a new table, the warehouse, as its folders are new too.
pub(crate) async fn sync_files(
    sync: &dyn FileSync,
    top: &Path,
    files: Vec<String>,
    synced: &mut HashSet<String>,
) -> Result<()> {
    let mut paths = Vec::new();
    let mut folders = BTreeSet::new();
    for file in files {
        if synced.contains(&file) {
            continue;
        }
        let Some(path) = local_path(&file) else {
            continue;
        };
        let mut folder = path.parent();
        while let Some(dir) = folder {
            folders.insert(dir.to_path_buf());
            if dir == top || !dir.starts_with(top) {
                break;
            }
            folder = dir.parent();
        }
        paths.push(path);
        synced.insert(file);
    }
    if paths.is_empty() {
        return Ok(());
    }
    sync.sync(paths, folders.into_iter().collect())
        .await
        .map_err(|e| Error::io_with("cannot make the commit's files durable", e))
}

/// Looks up each of `files` not in `checked` yet in an object store, and remembers it: fails
/// naming the first that is missing.
pub(crate) async fn check_present(
    file_io: &iceberg::io::FileIO,
    table: &str,
    files: Vec<String>,
    checked: &mut HashSet<String>,
) -> Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let new: Vec<String> = files.into_iter().filter(|f| !checked.contains(f)).collect();
    let found: Vec<(String, bool)> = futures::stream::iter(new)
        .map(|file| async move {
            let exists = file_io.exists(&file).await.map_err(from_iceberg(&format!(
                "cannot look up {file} before committing `{table}`"
            )))?;
            Ok::<_, Error>((file, exists))
        })
        .buffer_unordered(PRESENCE_CHECKS)
        .try_collect()
        .await?;
    for (file, exists) in found {
        if !exists {
            return Err(Error::io(format!(
                "cannot commit `{table}`: its new file {file} is gone"
            ))
            .with_hint(
                "run the write again; if it ran longer than `[maintenance] gc_grace`, gc removed \
                 its files as unreferenced: raise the grace above the longest write",
            )
            .shown());
        }
        checked.insert(file);
    }
    Ok(())
}

/// Object-store lookups one commit runs at once.
const PRESENCE_CHECKS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_with_and_without_a_scheme() {
        assert_eq!(
            local_path("/w/t/a.json"),
            Some(PathBuf::from("/w/t/a.json"))
        );
        assert_eq!(local_path("file:///w/a"), Some(PathBuf::from("/w/a")));
        assert_eq!(local_path("file:/w/a"), Some(PathBuf::from("/w/a")));
        assert_eq!(local_path("s3://bucket/w/a"), None);
    }

    #[tokio::test]
    async fn a_commit_naming_a_file_no_longer_in_the_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("a.parquet").display().to_string();
        std::fs::write(&here, b"PAR1").unwrap();
        let gone = dir.path().join("gone.parquet").display().to_string();
        let file_io = iceberg::io::FileIO::new_with_fs();
        let mut checked = HashSet::new();
        check_present(&file_io, "s.t", vec![here.clone()], &mut checked)
            .await
            .unwrap();
        assert!(checked.contains(&here));
        let e = check_present(&file_io, "s.t", vec![here, gone], &mut checked)
            .await
            .unwrap_err();
        assert!(
            e.message.contains("`s.t`") && e.message.contains("gone.parquet"),
            "{e}"
        );
        assert!(e.hint.unwrap().contains("gc_grace"));
    }
}
