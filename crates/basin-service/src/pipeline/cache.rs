//! The run cache: a model whose code, environment, parameters and inputs (table snapshots, or
//! the keys of the models it reads) are unchanged is not run again. Its earlier output is an
//! Arrow IPC file under `.basin/cache/models/`, memory-mapped on a hit.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use basin_catalog::{Error, Result};
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
        let entry: Entry = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
        let (schema, batches) = basin_runtime::read_ipc_file(&data).ok()?;
        Some((entry, schema, batches))
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
            .map_err(|e| Error::io(format!("{}: {e}", self.dir.display())))?;
        let (data, meta) = self.paths(key);
        let tmp = self
            .dir
            .join(format!(".tmp-{key}-{}", uuid::Uuid::new_v4().simple()));
        let written = basin_runtime::write_ipc_file(&tmp, schema, batches).and_then(|()| {
            std::fs::rename(&tmp, &data).map_err(|e| Error::io(e.to_string()))?;
            let tmp_meta = tmp.with_extension("json");
            let json = serde_json::to_vec(entry).map_err(|e| Error::internal(e.to_string()))?;
            std::fs::write(&tmp_meta, json).map_err(|e| Error::io(e.to_string()))?;
            std::fs::rename(&tmp_meta, &meta).map_err(|e| Error::io(e.to_string()))
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
