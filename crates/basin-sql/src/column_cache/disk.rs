//! Columns kept decoded on disk, for the next process (`[sql] column_cache_disk`).
//!
//! A process per query (`basin query`) starts with nothing kept: every scan decodes its
//! Parquet pages again, into memory the kernel must first zero. So each column a cache keeps
//! is also written here, once, as an Arrow IPC file, and a later process reads it back
//! mapped as it lies: no decoding, no copy, and its pages come from the system's page cache,
//! shared by every process that reads them. (Databricks' disk cache does the same for
//! Spark: remote Parquet kept on local disk in a format faster to read.)
//!
//! A file here holds one column of one data file, as a scan reads it, under a name made from
//! the column's key ([`ColumnKey`]: the data file's store, location, size and time of last
//! write, the column's name and type), which the file also carries and which a read checks.
//! Data files are never rewritten, so a kept column is never stale. Its batches are its row
//! groups' batches in order; the file's row groups and each one's batches and stored bytes
//! are in its schema's metadata.
//!
//! A file is written under a temporary name and renamed into place: a reader sees a
//! whole file or none, and a process that dies mid-write leaves a temporary file, removed
//! an hour later. A file that does not read back (a disk's error, a file from another
//! version) is removed and its column decoded again.
//!
//! A file is an Arrow IPC file followed by the CRC-32C of all its bytes and a mark of four
//! ([`TRAILER`]). A read checks the checksum first, and then takes the arrays as written,
//! without arrow's validation of each value: they were valid when this process's kind wrote
//! them, and the checksum says every byte (the footer's list of blocks included) is as
//! written. Validated, a mapped column of strings cost more than decoding it: arrow checks
//! each string view's UTF-8 one by one (two thirds of TPC-H q19's time), where the checksum
//! runs at memory speed. The checksum guards against a disk's errors, not a forger: whoever
//! may write the lakehouse's `.basin` folder can change its catalog too.
//!
//! Mapped files need a local disk: a mapping of a file another host removes (a network file
//! system), or whose page the disk fails to read again, ends the process (`SIGBUS`). The
//! lakehouse's `.basin` folder, with its SQLite catalog, is local already. The folder is bounded: past `[sql] column_cache_disk` bytes, the files read least
//! recently (a read marks its file) are removed first. A process that has a file mapped
//! keeps reading it after another removes it.
//!
//! Arrow's IPC file format is read by hand around `FileDecoder` (its footer, then each
//! block of the mapped file): arrow's `FileReader` reads through `Read` into buffers of its
//! own, which would copy what the mapping already holds.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arrow::array::ArrayRef;
use arrow::buffer::Buffer;
use arrow::datatypes::{Field, Schema};
use arrow::ipc::convert::fb_to_schema;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::root_as_footer;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;

use super::parts::{Column, ColumnKey, Layout};

/// The schema metadata a file carries: its column's key, and its row groups.
const KEY: &str = "basin.column";
const GROUPS: &str = "basin.groups";
/// The end of a file: the CRC-32C of the Arrow file before it, then this mark.
const TRAILER: &[u8; 4] = b"BSC1";
/// Changes when what a file holds does, so that files of an older Basin read as misses.
const FORMAT: &str = "basin-columns-3";
const SUFFIX: &str = ".arrow";
/// A temporary file older than this is left over from a process that died while writing.
const ABANDONED: Duration = Duration::from_secs(3600);

/// The folder of kept columns, and what it did.
pub(crate) struct Disk {
    dir: PathBuf,
    limit: u64,
    /// Bytes in the folder at its last sweep, and written by this process since.
    swept: AtomicU64,
    written: AtomicU64,
    loads: AtomicU64,
    stores: AtomicU64,
}

/// A row group as a file lists it: where it begins in the data file, its rows, its
/// batches here, and its column's bytes in the data file.
type Group = (i64, usize, usize, u64);

impl Disk {
    /// Columns kept in `dir` (made at the first column kept), at most `limit` bytes of them;
    /// none when `limit` is 0, or when this user cannot write there (a read-only lakehouse:
    /// a process would decode columns only to fail to keep them).
    pub(crate) fn open(dir: &Path, limit: u64) -> Option<Self> {
        if limit == 0 || !writable(dir) {
            return None;
        }
        Some(Self {
            dir: dir.to_path_buf(),
            limit,
            swept: AtomicU64::new(u64::MAX),
            written: AtomicU64::default(),
            loads: AtomicU64::default(),
            stores: AtomicU64::default(),
        })
    }

    /// Its bound, its bytes (below), and the columns read from it and written to it.
    pub(super) fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.limit,
            self.bytes(),
            self.loads.load(Ordering::Relaxed),
            self.stores.load(Ordering::Relaxed),
        )
    }

    /// The folder's bytes as this process last counted them, and written since.
    pub(super) fn bytes(&self) -> u64 {
        let swept = self.swept.load(Ordering::Relaxed);
        (if swept == u64::MAX { 0 } else { swept }) + self.written.load(Ordering::Relaxed)
    }

    pub(super) fn path(&self, key: &ColumnKey) -> PathBuf {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(describe(key).as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(name + SUFFIX)
    }

    /// Whether `key`'s column is kept here.
    pub(super) fn has(&self, key: &ColumnKey) -> bool {
        self.path(key).exists()
    }

    /// `key`'s column and its data file's row groups, when kept here.
    pub(super) fn load(&self, key: &ColumnKey) -> Option<(Layout, Column)> {
        let path = self.path(key);
        let file = File::open(&path).ok()?;
        // SAFETY: files here are written whole under another name and renamed into place,
        // and never written again; one removed while mapped stays readable through the
        // mapping (on a local disk, see the module's documentation).
        let map = match unsafe { memmap2::Mmap::map(&file) } {
            Ok(map) => map,
            Err(e) => {
                // Out of mappings or memory: the file may be whole; it stays.
                tracing::debug!("column cache: cannot map {}: {e}", path.display());
                return None;
            }
        };
        // A file that panics arrow's reader is as unreadable as one it refuses.
        let read = std::panic::catch_unwind(|| read(map, key))
            .unwrap_or_else(|_| Err("arrow's reader panicked".into()));
        match read {
            Ok(found) => {
                // Marks the file as read now: the sweep removes the least recently read.
                let _ = file.set_modified(SystemTime::now());
                self.loads.fetch_add(1, Ordering::Relaxed);
                Some(found)
            }
            Err(e) => {
                tracing::debug!("column cache: {} does not read back: {e}", path.display());
                // Removed unless another process has renamed a new file into its place
                // since it was opened.
                let same = |meta: std::io::Result<std::fs::Metadata>| {
                    meta.map(|m| (m.dev(), m.ino())).ok()
                };
                if same(file.metadata()).is_some_and(|ours| same(path.metadata()) == Some(ours)) {
                    let _ = std::fs::remove_file(&path);
                }
                None
            }
        }
    }

    /// Writes `key`'s column here, unless its file would take over a quarter of the
    /// folder's bound (one column cannot push all others out).
    pub(super) fn store(&self, key: &ColumnKey, layout: &Layout, column: &Column) {
        // A column's arrays take at least the bytes its file does, give or take the
        // file's few hundred of framing.
        if column.bytes > self.limit {
            return;
        }
        let path = self.path(key);
        let temporary = self.dir.join(format!(
            ".{}-{}.tmp",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        // A folder that cannot be made (a read-only lakehouse) keeps nothing; its queries
        // read the data files as they would without it.
        let written = std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot make {}: {e}", self.dir.display()))
            .and_then(|()| write(&temporary, &path, key, layout, column, self.limit / 4));
        match written {
            Ok(None) => {}
            Ok(Some(bytes)) => {
                self.stores.fetch_add(1, Ordering::Relaxed);
                let written = self.written.fetch_add(bytes, Ordering::Relaxed) + bytes;
                if self.swept.load(Ordering::Relaxed) == u64::MAX || written > self.limit / 16 {
                    self.sweep();
                }
            }
            Err(e) => {
                tracing::debug!("column cache: cannot keep {}: {e}", key.file.path);
                let _ = std::fs::remove_file(&temporary);
            }
        }
    }

    /// Removes the files read least recently until the folder is within its bound, and
    /// temporary files left by processes that died while writing.
    pub(super) fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut files = Vec::new();
        let mut total = 0;
        for entry in entries.flatten() {
            let (Ok(meta), name) = (entry.metadata(), entry.file_name()) else {
                continue;
            };
            let name = name.to_string_lossy();
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.starts_with('.') && name.ends_with(".tmp") {
                if now.duration_since(modified).unwrap_or_default() > ABANDONED {
                    let _ = std::fs::remove_file(entry.path());
                }
            } else if name.ends_with(SUFFIX) {
                total += meta.len();
                files.push((modified, meta.len(), entry.path()));
            }
        }
        files.sort_unstable();
        for (_, bytes, path) in files {
            if total <= self.limit {
                break;
            }
            // One another process removed first is gone all the same.
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {}
                _ => total -= bytes,
            }
        }
        self.written.store(0, Ordering::Relaxed);
        self.swept.store(total, Ordering::Relaxed);
    }
}

/// `key` as a file names and carries it (the type's `Debug` form: its fields' names,
/// nullability and metadata too).
fn describe(key: &ColumnKey) -> String {
    let file = &key.file;
    format!(
        "{FORMAT}\n{}\n{}\n{}\n{}\n{}\n{:?}\n{}",
        file.store, file.path, file.size, file.modified, key.name, key.data_type, key.batch
    )
}

/// Whether this user may make files in `dir`, or make `dir` where it is missing.
fn writable(dir: &Path) -> bool {
    let Some(existing) = dir.ancestors().find(|p| p.exists()) else {
        return false;
    };
    rustix::fs::access(existing, rustix::fs::Access::WRITE_OK).is_ok()
}

/// Writes `column` to `temporary`, flushes it and renames it to `path`; its bytes (`None`,
/// and nothing kept, past `most`).
fn write(
    temporary: &Path,
    path: &Path,
    key: &ColumnKey,
    layout: &Layout,
    column: &Column,
    most: u64,
) -> Result<Option<u64>, String> {
    let groups: Vec<Group> = layout
        .groups
        .iter()
        .zip(&column.groups)
        .zip(&column.stored)
        .map(|((&(start, rows), batches), &stored)| (start, rows, batches.len(), stored))
        .collect();
    let metadata = HashMap::from([
        (KEY.to_string(), describe(key)),
        (
            GROUPS.to_string(),
            serde_json::to_string(&groups).map_err(|e| e.to_string())?,
        ),
    ]);
    let field = Field::new("column", key.data_type.clone(), true);
    let schema = Arc::new(Schema::new(vec![field]).with_metadata(metadata));
    let file = File::create(temporary).map_err(|e| e.to_string())?;
    let summed = Summed {
        out: BufWriter::new(file),
        bytes: 0,
        crc: 0,
    };
    let mut writer = FileWriter::try_new(summed, &schema).map_err(|e| e.to_string())?;
    for array in column.groups.iter().flatten() {
        let batch =
            RecordBatch::try_new(schema.clone(), vec![array.clone()]).map_err(|e| e.to_string())?;
        writer.write(&batch).map_err(|e| e.to_string())?;
        if writer.get_ref().bytes > most {
            drop(writer);
            std::fs::remove_file(temporary).map_err(|e| e.to_string())?;
            return Ok(None);
        }
    }
    writer.finish().map_err(|e| e.to_string())?;
    let Summed {
        mut out,
        bytes,
        crc,
    } = writer.into_inner().map_err(|e| e.to_string())?;
    out.write_all(&crc.to_le_bytes())
        .and_then(|()| out.write_all(TRAILER))
        .map_err(|e| e.to_string())?;
    out.into_inner().map_err(|e| e.to_string())?;
    let bytes = bytes + 8;
    // Not flushed to the disk first: after a crash, a file the disk did not keep whole
    // fails its checksum and is decoded again. (Flushing made TPC-H q01's first process at
    // scale 1, which keeps 528 MB of columns, take 3.0 s against 2.6 s.)
    std::fs::rename(temporary, path).map_err(|e| e.to_string())?;
    Ok(Some(bytes))
}

/// A file being written, and the count and CRC-32C of the bytes written so far.
struct Summed {
    out: BufWriter<File>,
    bytes: u64,
    crc: u32,
}

impl std::io::Write for Summed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A file's mapping read as `key`'s column: its arrays point into the mapping.
fn read(map: memmap2::Mmap, key: &ColumnKey) -> Result<(Layout, Column), String> {
    let bytes = map.len() as u64;
    let whole = Buffer::from(bytes::Bytes::from_owner(map));
    // The Arrow file, and the checksum and mark after it.
    let arrow = whole
        .len()
        .checked_sub(8)
        .ok_or("shorter than its trailer")?;
    if &whole[arrow + 4..] != TRAILER {
        return Err("no trailer".into());
    }
    let crc = u32::from_le_bytes(
        whole[arrow..arrow + 4]
            .try_into()
            .map_err(|_| "no checksum")?,
    );
    if crc32c::crc32c(&whole[..arrow]) != crc {
        return Err("its checksum does not match".into());
    }
    let buffer = whole.slice_with_length(0, arrow);
    let trailer = buffer
        .len()
        .checked_sub(10)
        .ok_or("shorter than an Arrow file")?;
    let footer_len = read_footer_length(buffer[trailer..].try_into().map_err(|_| "no trailer")?)
        .map_err(|e| e.to_string())?;
    let footer_start = trailer
        .checked_sub(footer_len)
        .ok_or("a footer longer than the file")?;
    let footer = root_as_footer(&buffer[footer_start..trailer]).map_err(|e| e.to_string())?;
    let schema = fb_to_schema(footer.schema().ok_or("no schema")?);
    let field = schema.fields().first().ok_or("no column")?;
    if schema.metadata().get(KEY) != Some(&describe(key)) || field.data_type() != &key.data_type {
        return Err("another column's file".into());
    }
    let groups: Vec<Group> =
        serde_json::from_str(schema.metadata().get(GROUPS).ok_or("no row groups")?)
            .map_err(|e| e.to_string())?;
    let decoder = FileDecoder::new(Arc::new(schema), footer.version());
    // SAFETY: the checksum matched: these are the bytes, footer included, of arrays that
    // were valid when they were written (see the module's documentation).
    let mut decoder = unsafe { decoder.with_skip_validation(true) };
    let block = |b: &arrow::ipc::Block| -> Result<Buffer, String> {
        let start = usize::try_from(b.offset()).map_err(|e| e.to_string())?;
        let length = usize::try_from(b.metaDataLength()).map_err(|e| e.to_string())?
            + usize::try_from(b.bodyLength()).map_err(|e| e.to_string())?;
        if start
            .checked_add(length)
            .is_none_or(|end| end > footer_start)
        {
            return Err("a block past the file's end".into());
        }
        Ok(buffer.slice_with_length(start, length))
    };
    for b in footer.dictionaries().iter().flatten() {
        decoder
            .read_dictionary(b, &block(b)?)
            .map_err(|e| e.to_string())?;
    }
    let mut blocks = footer.recordBatches().ok_or("no batches")?.iter();
    let mut column = Column {
        groups: Vec::with_capacity(groups.len()),
        stored: groups.iter().map(|g| g.3).collect(),
        bytes,
    };
    for &(_, rows, batches, _) in &groups {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(batches);
        for _ in 0..batches {
            let b = blocks
                .next()
                .ok_or("fewer batches than its row groups hold")?;
            let batch = decoder
                .read_record_batch(b, &block(b)?)
                .map_err(|e| e.to_string())?
                .ok_or("an empty block")?;
            arrays.push(batch.column(0).clone());
        }
        if arrays.iter().map(|a| a.len()).sum::<usize>() != rows {
            return Err("a row group of other rows than it says".into());
        }
        column.groups.push(arrays);
    }
    if blocks.next().is_some() {
        return Err("more batches than its row groups hold".into());
    }
    let layout = Layout {
        groups: groups.iter().map(|g| (g.0, g.1)).collect(),
    };
    Ok((layout, column))
}
