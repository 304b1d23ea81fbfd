//! The run cache: a model whose code, environment, parameters and inputs (table snapshots, or
//! the keys of the models it reads) are unchanged is not run again. Its earlier output is an
//! Arrow IPC file under `.basin/cache/models/`, memory-mapped on a hit.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use basin_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped when what a key covers changes.
const VERSION: &str = "basin-run-cache-1";

#[derive(Clone, Debug)]
pub struct RunCache {
    dir: PathBuf,
}

/// What is kept beside an output.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub model: String,
    pub rows: u64,
    /// For a stored model: the table's metadata after the run that made it. A hit needs the
    /// target's table to be exactly that (else the model runs and stores again).
    pub metadata_location: Option<String>,
}

/// The key of everything a model's output depends on.
pub fn key(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(VERSION.as_bytes());
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl RunCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{key}.arrow")),
            self.dir.join(format!("{key}.json")),
        )
    }

    /// The entry and output for `key`, if both are there.
    pub fn get(&self, key: &str) -> Option<(Entry, SchemaRef, Vec<RecordBatch>)> {
        let (data, meta) = self.paths(key);
        let entry: Entry = serde_json::from_slice(&std::fs::read(&meta).ok()?).ok()?;
        let (schema, batches) = basin_runtime::read_ipc_file(&data).ok()?;
        // The entry's mtime is "last used", for `prune`.
        if let Ok(file) = std::fs::File::options().append(true).open(&meta) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        Some((entry, schema, batches))
    }

    /// Removes the entries unused for `unused_for` (and leftovers of interrupted writes), or
    /// only counts them; returns how many and their bytes. A removed entry is a miss: the
    /// model runs again.
    pub fn prune(&self, unused_for: std::time::Duration, dry_run: bool) -> Result<(u64, u64)> {
        let cutoff = std::time::SystemTime::now() - unused_for;
        let Ok(listed) = std::fs::read_dir(&self.dir) else {
            return Ok((0, 0));
        };
        let (mut count, mut bytes) = (0, 0);
        for file in listed.flatten() {
            let path = file.path();
            let name = file.file_name().to_string_lossy().into_owned();
            let Ok(meta) = file.metadata() else { continue };
            let old = meta.modified().is_ok_and(|m| m < cutoff);
            let stale = if let Some(key) = name
                .strip_suffix(".json")
                .filter(|_| !name.starts_with(".tmp-"))
            {
                old.then(|| vec![path.clone(), self.paths(key).0])
            } else if name.starts_with(".tmp-") {
                old.then(|| vec![path.clone()])
            } else {
                None
            };
            for doomed in stale.into_iter().flatten() {
                // The entry first: without it, the data file is never read.
                let Ok(size) = std::fs::metadata(&doomed).map(|m| m.len()) else {
                    continue;
                };
                count += u64::from(doomed.extension().is_some_and(|e| e == "json"));
                bytes += size;
                if !dry_run {
                    std::fs::remove_file(&doomed)
                        .map_err(|e| Error::io_with(doomed.display(), e))?;
                }
            }
        }
        Ok((count, bytes))
    }

    /// Stores an output: data first, then the entry (its presence means "complete"), each
    /// written aside and renamed into place.
    pub fn put(
        &self,
        key: &str,
        entry: &Entry,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io_with(format!("cannot create {}", self.dir.display()), e))?;
        let (data, meta) = self.paths(key);
        let tmp = self
            .dir
            .join(format!(".tmp-{key}-{}", basin_core::ids::random()));
        let written = basin_runtime::write_ipc_file(&tmp, schema, batches).and_then(|()| {
            std::fs::rename(&tmp, &data)
                .map_err(|e| Error::io_with(format!("cannot write {}", data.display()), e))?;
            let tmp_meta = tmp.with_extension("json");
            let json = serde_json::to_vec(entry).map_err(|e| Error::internal(e.to_string()))?;
            std::fs::write(&tmp_meta, json)
                .map_err(|e| Error::io_with(format!("cannot write {}", tmp_meta.display()), e))?;
            std::fs::rename(&tmp_meta, &meta)
                .map_err(|e| Error::io_with(format!("cannot write {}", meta.display()), e))
        });
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!(
                "cannot store the run cache entry {key}: {}",
                e.message
            ))
        })
    }
}

/// `.basin/cache/models` of the lakehouse at `root`.
pub fn folder(basin_dir: &Path) -> PathBuf {
    basin_dir.join("cache").join("models")
}
