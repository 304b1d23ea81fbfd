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
//! ([`scan::KeptScan`]); any other runs the Parquet scan as planned and, once it has read
//! them through (not a scan a `LIMIT` stopped), its files' columns are decoded in the
//! background, once each, for the next query. A query never waits for a fill.
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
//! doors, whose process lives on, and a CLI command's query when kept columns are also
//! written to disk for the next process ([`disk`], `[sql] column_cache_disk`); without that,
//! a command's one query would only pay for the fill. Such a process reads a column from
//! disk where memory lacks it, and keeps it in memory after (mapped, not copied).

mod decode;
pub(crate) mod disk;
mod parts;
pub(crate) mod scan;

#[cfg(test)]
mod disk_tests;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow::datatypes::DataType;
use datafusion::datasource::listing::{FileRange, PartitionedFile};
use object_store::ObjectStore;

use decode::{decode, least_width};
use parts::{Column, ColumnKey, FileKey, Layout, column_key};

/// `[sql] column_cache` unless set: the bytes of decoded columns a server keeps.
pub const COLUMN_CACHE: u64 = 1 << 30;

/// `[sql] column_cache_disk` at most unless set (a tenth of the free disk when less): the
/// bytes of decoded columns kept on disk for the next process ([`disk`]).
pub const COLUMN_CACHE_DISK: u64 = 4 << 30;

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

/// The columns a process keeps (`[sql] column_cache` bytes; 0 keeps none), and what it did.
pub struct ColumnCache {
    kept: Option<Kept>,
    limit: u64,
    /// Where kept columns are also written for the next process (`[sql] column_cache_disk`).
    disk: Option<disk::Disk>,
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
    /// `[sql] column_cache_disk`, the bytes in its folder as last counted, and the columns
    /// read from it and written to it.
    pub disk_limit: u64,
    pub disk_bytes: u64,
    pub disk_loads: u64,
    pub disk_stores: u64,
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
            disk: None,
            hits: AtomicU64::default(),
            misses: AtomicU64::default(),
            fills: AtomicU64::default(),
            refusals: AtomicU64::default(),
        }
    }

    /// Writes the columns this cache keeps to `disk` too, and reads them from there when
    /// they are not kept in memory (with a cache that keeps nothing, neither).
    pub(crate) fn with_disk(mut self, disk: Option<disk::Disk>) -> Self {
        self.disk = disk.filter(|_| self.kept.is_some());
        self
    }

    pub(crate) fn on_disk(&self) -> bool {
        self.disk.is_some()
    }

    pub(crate) fn enabled(&self) -> bool {
        self.kept.is_some()
    }

    pub fn stats(&self) -> ColumnCacheStats {
        let (bytes, columns) = self.kept.as_ref().map_or((0, 0), |kept| {
            kept.columns.run_pending_tasks();
            (kept.columns.weighted_size(), kept.columns.entry_count())
        });
        let (disk_limit, disk_bytes, disk_loads, disk_stores) =
            self.disk.as_ref().map_or((0, 0, 0, 0), disk::Disk::counts);
        ColumnCacheStats {
            limit: self.limit,
            bytes,
            columns,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            fills: self.fills.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
            disk_limit,
            disk_bytes,
            disk_loads,
            disk_stores,
        }
    }

    /// Every one of `files`' `columns` in batches of `batch` rows, when all are kept (counted
    /// as a hit); else `None` (a miss).
    fn find(
        &self,
        files: &[FileKey],
        columns: &[(String, DataType)],
        batch: usize,
    ) -> Option<Found> {
        let kept = self.kept.as_ref()?;
        let found = files
            .iter()
            .map(|file| {
                let mut layout = kept.layouts.get(file);
                let columns = columns
                    .iter()
                    .map(|(name, data_type)| {
                        let key = column_key(file, name, data_type, batch);
                        kept.columns
                            .get(&key)
                            .or_else(|| self.mapped(kept, key, &mut layout))
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some((layout?, columns))
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

    /// `key`'s column read from disk and kept in memory (with its file's layout, unless
    /// `layout` has it), when the disk keeps it.
    fn mapped(
        &self,
        kept: &Kept,
        key: ColumnKey,
        layout: &mut Option<Arc<Layout>>,
    ) -> Option<Arc<Column>> {
        let (read, column) = self.disk.as_ref()?.load(&key)?;
        // Every column of a file must cut its row groups as the file's layout does (they
        // are zipped batch by batch); one that does not is read from the file.
        match layout {
            Some(layout) if layout.groups != read.groups => return None,
            Some(_) => {}
            None => {
                let read = Arc::new(read);
                kept.layouts.insert(key.file.clone(), read.clone());
                *layout = Some(read);
            }
        }
        let column = Arc::new(column);
        kept.columns.insert(key, column.clone());
        Some(column)
    }

    /// Waits for the fills scans started to end (and their columns to be written to
    /// disk): a process about to exit (`basin query`) keeps them for the next.
    pub(crate) async fn settled(&self) {
        let Some(kept) = self.kept.as_ref() else {
            return;
        };
        while !kept
            .filling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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
            // Not what is kept in memory or on disk already, nor what was refused.
            let wanted: Vec<(String, DataType)> = columns
                .iter()
                .filter(|(name, data_type)| {
                    let column = column_key(&key, name, data_type, size);
                    !kept.columns.contains_key(&column)
                        && !kept.refused.contains_key(&column)
                        && !self.disk.as_ref().is_some_and(|disk| disk.has(&column))
                })
                .cloned()
                .collect();
            if (wanted.is_empty() && (!columns.is_empty() || kept.layouts.contains_key(&key)))
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
                // The file leaves `filling` however the fill ends, a panic included (a
                // process waiting for fills to settle would wait for ever).
                let filling = Filling {
                    cache: this.clone(),
                    key: key.clone(),
                };
                let turn = turns.acquire_owned().await;
                let decoded = decode(store, file, &wanted, size, limit).await;
                drop(turn);
                this.keep_decoded(&key, wanted, size, decoded);
                drop(filling);
            });
        }
    }

    /// Keeps what [`decode`] made of `key`'s `wanted` columns, and refuses the rest.
    fn keep_decoded(
        &self,
        key: &FileKey,
        wanted: Vec<(String, DataType)>,
        batch: usize,
        decoded: Result<(Layout, Vec<Option<Column>>), String>,
    ) {
        let Some(kept) = self.kept.as_ref() else {
            return;
        };
        match decoded {
            Ok((layout, columns)) => {
                for ((name, data_type), column) in wanted.iter().zip(columns) {
                    let column_key = column_key(key, name, data_type, batch);
                    match column {
                        Some(column) => {
                            self.fills.fetch_add(1, Ordering::Relaxed);
                            if let Some(disk) = &self.disk {
                                disk.store(&column_key, &layout, &column);
                            }
                            kept.columns.insert(column_key, Arc::new(column));
                        }
                        None => {
                            self.refusals.fetch_add(1, Ordering::Relaxed);
                            kept.refused.insert(column_key, ());
                        }
                    }
                }
                kept.layouts.insert(key.clone(), Arc::new(layout));
            }
            Err(e) => {
                // A file that cannot be read now (a store's hiccup) is tried again after
                // `REFUSED_FOR`; its scans read it as planned meanwhile.
                tracing::debug!("column cache: cannot decode {}: {e}", key.path);
                for (name, data_type) in &wanted {
                    self.refusals.fetch_add(1, Ordering::Relaxed);
                    kept.refused
                        .insert(column_key(key, name, data_type, batch), ());
                }
            }
        }
    }
}

/// A file being filled: taken off the cache's files being filled when dropped.
struct Filling {
    cache: Arc<ColumnCache>,
    key: FileKey,
}

impl Drop for Filling {
    fn drop(&mut self) {
        if let Some(kept) = &self.cache.kept {
            kept.filling
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.key);
        }
    }
}

/// Whether a scan of a file's `range` (the whole file without one) reads the row group that
/// begins at `start`: DataFusion's rule for splitting a file among partitions.
fn reads(range: Option<&FileRange>, start: i64) -> bool {
    range.is_none_or(|r| r.contains(start))
}
