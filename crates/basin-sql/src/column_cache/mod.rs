//! Columns kept decoded between queries (`[sql] column_cache`).
//!
//! A warm server spends most of a scan's time turning the same Parquet pages into the same
//! Arrow arrays, query after query: a profile of `basin serve` over TPC-H put a third of
//! its CPU in Snappy and in dictionary decoding. A data file is never rewritten once
//! committed (Iceberg's files are immutable; expiry deletes them), so a column of a file,
//! decoded once, is the same column for every later query of any commit that lists the file:
//! kept under the file's location, size and time of last write ([`FileKey`]) and the type
//! the scan reads it as, it is never stale, and a new commit needs no invalidation.
//!
//! What is kept: each column a scan read, each row group's rows in batches as the scan reads
//! them ([`Column`]), and each file's row groups as DataFusion splits a file among
//! partitions ([`Layout`]). A
//! scan partition whose files and columns are all kept is answered from memory
//! ([`scan::KeptScan`]); any other runs the Parquet scan as planned and, after it has
//! started, its files' columns are decoded in the background, once each, for the next query.
//! A query never waits for a fill.
//!
//! What is not: a column of one file over a quarter of the cache (one file cannot push all
//! others out), a column that is not in the file (schema evolution: the Parquet scan fills
//! it with nulls), whose type does not convert to the one the scan reads, or whose file could
//! not be read. Those are refused, and not tried again for ten minutes. Kept columns leave
//! least recently used first, when newer ones need the room, or after half an hour unread.
//!
//! The kept arrays are outside `[sql] memory_limit`, which bounds what queries hold while
//! they run: `[sql] column_cache` is the bytes a process keeps on top of it (0 keeps none).
//! A door opts in per session ([`crate::Session::with_kept_columns`]): the server's query
//! doors, whose process lives on. A CLI command's one query would only pay for the fill.

mod decode;
pub(crate) mod scan;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::datasource::listing::{FileRange, PartitionedFile};
use object_store::ObjectStore;

use decode::decode;
use decode::least_width;

/// `[sql] column_cache` unless set: the bytes of decoded columns a server keeps.
pub const COLUMN_CACHE: u64 = 1 << 30;

/// A kept column unread this long is let go.
const IDLE: Duration = Duration::from_secs(1800);

/// Columns refused (not in their file, of another type, too large, unreadable) remembered at
/// most, so that a scan does not try them again at every query; and for how long (a store
/// that failed a read may answer later).
const REFUSALS: u64 = 100_000;
const REFUSED_FOR: Duration = Duration::from_secs(600);

/// Files decoded at once: each holds a file's columns until it is done.
const FILLS: usize = 2;

/// Fills run on a thread of their own, this many steps of nice below the queries' threads
/// (which start it). On the queries' own threads, TPC-H's first runs at scale 1 took 5.35 s
/// against 3.2 s without the cache, each query waiting behind the decoding it had started; at
/// nice 19 the first runs took no longer, but under queries back to back a fill got so little
/// of the CPU that q19's columns were still not kept after six runs. Five steps give a fill
/// about a seventh of two busy cores.
const FILL_NICE: i32 = 5;

/// A data file as a scan names it. Its location alone would do for the warehouse's files,
/// which are never rewritten; the size and time of last write guard against a file replaced
/// under the same name all the same.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct FileKey {
    store: String,
    path: String,
    size: u64,
    modified: i64,
}

impl FileKey {
    fn new(store: &str, file: &PartitionedFile) -> Self {
        let meta = &file.object_meta;
        Self {
            store: store.to_string(),
            path: meta.location.to_string(),
            size: meta.size,
            modified: meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
        }
    }
}

/// One column of one file, as a scan reads it (its name in the file, the type it is read as).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ColumnKey {
    file: FileKey,
    name: String,
    data_type: DataType,
}

/// A file's row groups: where each begins (its first column's first page, which is how
/// DataFusion assigns a row group to one of a file's byte ranges) and its rows.
#[derive(Debug)]
struct Layout {
    groups: Vec<(i64, usize)>,
}

/// One column of one file, decoded: for each row group, in the file's order, its rows in
/// batches of the size the session that decoded them reads.
#[derive(Debug)]
struct Column {
    groups: Vec<Vec<ArrayRef>>,
    /// Each row group's bytes of this column in the file (its chunks, compressed): what the
    /// Parquet scan would read, and a kept scan meters.
    stored: Vec<u64>,
    bytes: u64,
}

/// The columns a process keeps (`[sql] column_cache` bytes; 0 keeps none), and what it did.
pub struct ColumnCache {
    kept: Option<Kept>,
    limit: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    fills: AtomicU64,
    refusals: AtomicU64,
}

/// The maps behind a cache that keeps anything.
struct Kept {
    columns: moka::sync::Cache<ColumnKey, Arc<Column>>,
    layouts: moka::sync::Cache<FileKey, Arc<Layout>>,
    refused: moka::sync::Cache<ColumnKey, ()>,
    /// Files being decoded now, so that two scans of one file decode it once.
    filling: Mutex<HashSet<FileKey>>,
    /// Turns to decode ([`FILLS`]).
    turns: Arc<tokio::sync::Semaphore>,
    /// The thread fills run on, started at the first.
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
}

impl Drop for Kept {
    /// A cache may be dropped inside an async context, where dropping a runtime panics.
    fn drop(&mut self) {
        if let Some(Ok(runtime)) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Kept {
    fn runtime(&self) -> Option<&tokio::runtime::Runtime> {
        let started = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(FILLS)
                .thread_name("basin-column-fill")
                .on_thread_start(|| crate::planners::lower_priority(FILL_NICE))
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        });
        match started {
            Ok(runtime) => Some(runtime),
            Err(e) => {
                tracing::warn!("column cache: cannot start the thread that fills it: {e}");
                None
            }
        }
    }
}

/// What the column cache holds and has done (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ColumnCacheStats {
    /// `[sql] column_cache`.
    pub limit: u64,
    pub bytes: u64,
    pub columns: u64,
    /// Scan partitions answered from kept columns, and those that read their files.
    pub hits: u64,
    pub misses: u64,
    /// Columns decoded and kept, and columns refused (see the module's documentation).
    pub fills: u64,
    pub refusals: u64,
}

/// A scan partition's files and columns, all kept: what [`scan::KeptScan`] answers from.
struct Found {
    files: Vec<(Arc<Layout>, Vec<Arc<Column>>)>,
}

impl Found {
    /// The bytes of the files' columns in the row groups `ranges` hold (one range or none
    /// per file): what the Parquet scan reads for them.
    fn stored(&self, ranges: &[Option<FileRange>]) -> usize {
        let bytes: u64 = self
            .files
            .iter()
            .zip(ranges)
            .flat_map(|((layout, columns), range)| {
                layout
                    .groups
                    .iter()
                    .enumerate()
                    .filter(move |(_, (start, _))| reads(range.as_ref(), *start))
                    .map(|(i, _)| columns.iter().map(|c| c.stored[i]).sum::<u64>())
            })
            .sum();
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }
}

impl ColumnCache {
    /// A cache of at most `limit` bytes of columns; 0 keeps none.
    pub(crate) fn new(limit: u64) -> Self {
        let kept = (limit > 0).then(|| Kept {
            columns: moka::sync::Cache::builder()
                .max_capacity(limit)
                .weigher(|_: &ColumnKey, column: &Arc<Column>| {
                    u32::try_from(column.bytes).unwrap_or(u32::MAX)
                })
                .time_to_idle(IDLE)
                .build(),
            layouts: moka::sync::Cache::builder()
                .max_capacity(REFUSALS)
                .time_to_idle(IDLE)
                .build(),
            refused: moka::sync::Cache::builder()
                .max_capacity(REFUSALS)
                .time_to_live(REFUSED_FOR)
                .build(),
            filling: Mutex::default(),
            turns: Arc::new(tokio::sync::Semaphore::new(FILLS)),
            runtime: OnceLock::new(),
        });
        Self {
            kept,
            limit,
            hits: AtomicU64::default(),
            misses: AtomicU64::default(),
            fills: AtomicU64::default(),
            refusals: AtomicU64::default(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.kept.is_some()
    }

    pub fn stats(&self) -> ColumnCacheStats {
        let (bytes, columns) = self.kept.as_ref().map_or((0, 0), |kept| {
            kept.columns.run_pending_tasks();
            (kept.columns.weighted_size(), kept.columns.entry_count())
        });
        ColumnCacheStats {
            limit: self.limit,
            bytes,
            columns,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            fills: self.fills.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
        }
    }

    /// Every one of `files`' `columns`, when all are kept (counted as a hit); else `None`
    /// (a miss).
    fn find(&self, files: &[FileKey], columns: &[(String, DataType)]) -> Option<Found> {
        let kept = self.kept.as_ref()?;
        let found = files
            .iter()
            .map(|file| {
                let layout = kept.layouts.get(file)?;
                let columns = columns
                    .iter()
                    .map(|(name, data_type)| kept.columns.get(&column_key(file, name, data_type)))
                    .collect::<Option<Vec<_>>>()?;
                Some((layout, columns))
            })
            .collect::<Option<Vec<_>>>();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found.map(|files| Found { files })
    }

    /// Decodes, in the background, what `files` lack of `columns` (each file once, however
    /// many scans ask), with `store`, in batches of `size` rows, on the fill thread.
    fn fill(
        self: &Arc<Self>,
        store: Arc<dyn ObjectStore>,
        files: Vec<(FileKey, PartitionedFile)>,
        columns: Vec<(String, DataType)>,
        size: usize,
    ) {
        let Some(kept) = self.kept.as_ref() else {
            return;
        };
        let Some(runtime) = kept.runtime() else {
            return;
        };
        for (key, file) in files {
            let wanted: Vec<(String, DataType)> = columns
                .iter()
                .filter(|(name, data_type)| {
                    let column = column_key(&key, name, data_type);
                    !kept.columns.contains_key(&column) && !kept.refused.contains_key(&column)
                })
                .cloned()
                .collect();
            if (wanted.is_empty() && kept.layouts.contains_key(&key))
                || !kept
                    .filling
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone())
            {
                continue;
            }
            let (this, store, turns) = (self.clone(), store.clone(), kept.turns.clone());
            let limit = self.limit;
            runtime.spawn(async move {
                let turn = turns.acquire_owned().await;
                let decoded = decode(store, file, &wanted, size, limit).await;
                drop(turn);
                this.keep_decoded(&key, wanted, decoded);
            });
        }
    }

    /// Keeps what [`decode`] made of `key`'s `wanted` columns, and refuses the rest.
    fn keep_decoded(
        &self,
        key: &FileKey,
        wanted: Vec<(String, DataType)>,
        decoded: Result<(Layout, Vec<Option<Column>>), String>,
    ) {
        let Some(kept) = self.kept.as_ref() else {
            return;
        };
        match decoded {
            Ok((layout, columns)) => {
                kept.layouts.insert(key.clone(), Arc::new(layout));
                for ((name, data_type), column) in wanted.into_iter().zip(columns) {
                    let column_key = ColumnKey {
                        file: key.clone(),
                        name,
                        data_type,
                    };
                    match column {
                        Some(column) => {
                            self.fills.fetch_add(1, Ordering::Relaxed);
                            kept.columns.insert(column_key, Arc::new(column));
                        }
                        None => {
                            self.refusals.fetch_add(1, Ordering::Relaxed);
                            kept.refused.insert(column_key, ());
                        }
                    }
                }
            }
            Err(e) => {
                // A file that cannot be read now (a store's hiccup) is tried again after
                // `REFUSED_FOR`; its scans read it as planned meanwhile.
                tracing::debug!("column cache: cannot decode {}: {e}", key.path);
                for (name, data_type) in wanted {
                    self.refusals.fetch_add(1, Ordering::Relaxed);
                    kept.refused.insert(
                        ColumnKey {
                            file: key.clone(),
                            name,
                            data_type,
                        },
                        (),
                    );
                }
            }
        }
        kept.filling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Whether a scan of a file's `range` (the whole file without one) reads the row group that
/// begins at `start`: DataFusion's rule for splitting a file among partitions.
fn reads(range: Option<&FileRange>, start: i64) -> bool {
    range.is_none_or(|r| r.contains(start))
}

fn column_key(file: &FileKey, name: &str, data_type: &DataType) -> ColumnKey {
    ColumnKey {
        file: file.clone(),
        name: name.to_string(),
        data_type: data_type.clone(),
    }
}
