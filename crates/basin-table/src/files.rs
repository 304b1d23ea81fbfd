//! What garbage collection needs from the warehouse: every file a table's metadata reaches,
//! and every file the warehouse holds.

use std::collections::HashSet;
use std::time::SystemTime;

use iceberg::table::Table;

use crate::error::{Error, Result, from_iceberg};
use crate::warehouse::Warehouse;

/// The files some table metadata reaches: the `metadata.json` files themselves and those of
/// their metadata log (the earlier versions engines may look at, as Iceberg's own orphan
/// removal keeps them), statistics, and for every snapshot its manifest list, manifests, and
/// the data and delete files it reads: the entries alive in its manifests. A `deleted` entry
/// is only a tombstone; a snapshot before the deletion that still reads the file names it
/// alive in its own manifests, and is walked too. So once expiry drops the snapshots that
/// read a replaced file, nothing marks it (as Iceberg's own expiry decides).
#[derive(Debug, Default)]
pub struct Reachable {
    files: HashSet<String>,
    /// The `metadata.json` files walked. Apart from `files`: a file seen first as an entry
    /// of a newer file's metadata log is kept but not walked, and a ref may still read it
    /// (a branch at the old version of a table whose snapshots main expired).
    walked: HashSet<String>,
    /// Bytes of one metadata file read (`[sql] max_metadata_size`; 0 until set: the default).
    max_metadata: u64,
}

impl Reachable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads no metadata file larger than `bytes` (`[sql] max_metadata_size`): one past it
    /// fails the walk, as any file that cannot be read does.
    pub fn with_max_metadata_size(mut self, bytes: u64) -> Self {
        self.max_metadata = bytes;
        self
    }

    /// Adds what the `metadata.json` at `location` reaches. Any file that cannot be read is an
    /// error: a mark that missed something must not lead to a sweep.
    pub async fn add_metadata(&mut self, warehouse: &Warehouse, location: &str) -> Result<()> {
        if !self.walked.insert(normalize(location)) {
            return Ok(());
        }
        self.files.insert(normalize(location));
        let context = format!("cannot read {location}");
        let file_io = warehouse.file_io();
        let max = match self.max_metadata {
            0 => crate::bounded::MAX_METADATA_SIZE,
            set => set,
        };
        let metadata = crate::bounded::read_metadata(file_io, location, max, &context).await?;
        // Earlier metadata files are only kept, not walked: their snapshots are the ones
        // their committed successors list, or were expired on purpose.
        for entry in metadata.metadata_log() {
            self.files.insert(normalize(&entry.metadata_file));
        }
        for statistics in metadata.statistics_iter() {
            self.files.insert(normalize(&statistics.statistics_path));
        }
        for statistics in metadata.partition_statistics_iter() {
            self.files.insert(normalize(&statistics.statistics_path));
        }
        let snapshots: Vec<_> = metadata.snapshots().cloned().collect();
        let table = Table::builder()
            .identifier(
                iceberg::TableIdent::from_strs(["gc", "table"]).map_err(from_iceberg(&context))?,
            )
            .metadata(metadata)
            .metadata_location(location)
            .file_io(file_io.clone())
            .runtime(iceberg::Runtime::try_current().map_err(from_iceberg(&context))?)
            .readonly(true)
            .build()
            .map_err(from_iceberg(&context))?;
        for snapshot in snapshots {
            if !self.files.insert(normalize(snapshot.manifest_list())) {
                continue; // shared with another metadata file, already walked
            }
            let list = table
                .manifest_list_reader(&snapshot)
                .load()
                .await
                .map_err(from_iceberg(&format!(
                    "cannot read the manifest list {}",
                    snapshot.manifest_list()
                )))?;
            for manifest_file in list.entries() {
                if !self.files.insert(normalize(&manifest_file.manifest_path)) {
                    continue;
                }
                let manifest = manifest_file
                    .load_manifest(file_io)
                    .await
                    .map_err(from_iceberg(&format!(
                        "cannot read the manifest {}",
                        manifest_file.manifest_path
                    )))?;
                for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                    self.files.insert(normalize(entry.data_file().file_path()));
                }
            }
        }
        Ok(())
    }

    pub fn contains(&self, path: &str) -> bool {
        self.files.contains(&normalize(path))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// A path as the warehouse lists it: local paths without `file://` (engines writing through
/// the REST catalog may spell them either way).
fn normalize(path: &str) -> String {
    path.strip_prefix("file://").unwrap_or(path).to_string()
}

/// A file in the warehouse.
#[derive(Clone, Debug)]
pub struct StoredFile {
    /// As table metadata names it: an absolute path, or `s3://bucket/key`.
    pub path: String,
    pub bytes: u64,
    pub modified: SystemTime,
}

/// Whether garbage collection may ever delete a file of this name: the kinds of file an
/// Iceberg table is made of. Anything else in the warehouse is left alone.
pub fn is_table_file(path: &str) -> bool {
    [".parquet", ".avro", ".metadata.json", ".puffin", ".orc"]
        .iter()
        .any(|suffix| path.ends_with(suffix))
}

impl Warehouse {
    /// Every table file under the warehouse (see `is_table_file`).
    pub async fn list_table_files(&self) -> Result<Vec<StoredFile>> {
        if self.is_s3() {
            return self.s3_list().await;
        }
        let root = std::path::PathBuf::from(self.location());
        tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            let mut folders = vec![root];
            while let Some(folder) = folders.pop() {
                let entries = match std::fs::read_dir(&folder) {
                    Ok(entries) => entries,
                    // A warehouse nothing was written to yet.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(
                            Error::io(format!("cannot list {}", folder.display())).with_source(e)
                        );
                    }
                };
                for entry in entries {
                    let entry = entry.map_err(|e| {
                        Error::io(format!("cannot list {}", folder.display())).with_source(e)
                    })?;
                    let kind = entry.file_type().map_err(|e| {
                        Error::io(format!("{}", entry.path().display())).with_source(e)
                    })?;
                    if kind.is_dir() {
                        folders.push(entry.path());
                        continue;
                    }
                    let Some(path) = entry.path().to_str().map(str::to_string) else {
                        continue;
                    };
                    if !kind.is_file() || !is_table_file(&path) {
                        continue;
                    }
                    let meta = entry
                        .metadata()
                        .map_err(|e| Error::io(path.clone()).with_source(e))?;
                    files.push(StoredFile {
                        path,
                        bytes: meta.len(),
                        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
            }
            Ok(files)
        })
        .await
        .map_err(|e| Error::internal(format!("listing the warehouse: {e}")))?
    }

    /// Deletes files (paths as `list_table_files` gives them); a file already gone is fine.
    pub async fn delete_files(&self, paths: &[String]) -> Result<()> {
        if self.is_s3() {
            return self.s3_delete(paths).await;
        }
        let paths = paths.to_vec();
        tokio::task::spawn_blocking(move || {
            for path in paths {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::io(format!("cannot delete {path}")).with_source(e));
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(format!("deleting from the warehouse: {e}")))?
    }
}

impl Warehouse {
    /// Every object under `s3://BUCKET/PREFIX` (any bucket the warehouse's S3 settings
    /// reach), as `s3://` URLs, in order.
    pub async fn list_s3_objects(&self, url: &str) -> Result<Vec<String>> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::invalid(format!("`{url}` is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let operator = self.s3.clone().unwrap_or_default().operator(bucket, "")?;
        let listed = operator
            .list_with(prefix)
            .recursive(true)
            .await
            .map_err(|e| Error::io_with(format!("cannot list {url}"), e))?;
        let mut found: Vec<String> = listed
            .into_iter()
            .filter(|entry| entry.metadata().is_file())
            .map(|entry| format!("s3://{bucket}/{}", entry.path().trim_start_matches('/')))
            .collect();
        found.sort();
        Ok(found)
    }

    async fn s3_list(&self) -> Result<Vec<StoredFile>> {
        let (bucket, prefix, operator) = self.s3_operator()?;
        let listed = operator
            .list_with(&format!("{}/", prefix.trim_end_matches('/')))
            .recursive(true)
            .await
            .map_err(|e| Error::io_with(format!("cannot list {}", self.location()), e))?;
        Ok(listed
            .into_iter()
            .filter(|entry| entry.metadata().is_file() && is_table_file(entry.path()))
            .map(|entry| {
                let meta = entry.metadata();
                StoredFile {
                    path: format!("s3://{bucket}/{}", entry.path().trim_start_matches('/')),
                    bytes: meta.content_length(),
                    modified: meta
                        .last_modified()
                        .map_or(SystemTime::UNIX_EPOCH, SystemTime::from),
                }
            })
            .collect())
    }

    async fn s3_delete(&self, paths: &[String]) -> Result<()> {
        let (bucket, _, operator) = self.s3_operator()?;
        let own = format!("s3://{bucket}/");
        let keys: Vec<String> = paths
            .iter()
            .filter_map(|p| p.strip_prefix(&own).map(str::to_string))
            .collect();
        // The deleter sends them in batches (DeleteObjects) where the store allows.
        operator
            .delete_iter(keys)
            .await
            .map_err(|e| Error::io_with(format!("cannot delete from {}", self.location()), e))
    }
}
