//! The warehouse's local files. Listing, metadata and whole-file reads go through
//! `object_store`'s `LocalFileSystem`; the ranges a Parquet scan reads (its column chunks,
//! nearly all of a query's bytes) are mapped into memory instead of read.
//!
//! `LocalFileSystem::get_ranges` zeroes a fresh buffer for each range and copies the file's
//! pages into it (`object_store` 0.13, `local.rs`: `buf.resize(len, 0)` then `read_at`). A
//! profile of TPC-H q06 at SF10 put 9% of the CPU in the kernel's copy, and more in the
//! zeroing and in faulting the fresh buffer in. A mapping hands the decoder the page cache's
//! own pages: no copy, no zeroing.
//!
//! A file is mapped whole, once, while any range of it is held; each range read is then a
//! slice of that mapping. Mapping each range on its own was slower than reading it: every
//! unmapping interrupts the other cores to flush their TLBs (12% of q06's CPU). Each range is
//! paged in (`MADV_POPULATE_READ`) on a blocking thread, so a file not yet in the page cache
//! is read there, as `read_at` was, and a decoder thread never waits on the disk.
//!
//! A mapping is safe to read as long as the file is not cut short beneath it (which would
//! raise `SIGBUS`). Basin never rewrites a data file: Iceberg's files are immutable once
//! committed, and expiry deletes them, which an open mapping survives. Files that other tools
//! wrote and may rewrite (`basin table add-files`) are not read here: their tables carry a
//! name mapping, and `mapped.rs` scans them with iceberg's own reader.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use memmap2::Mmap;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetResult, ListResult, ObjectMeta, ObjectStore};

use super::reader::Reader;

/// The local file system, its scans' ranges mapped.
#[derive(Debug, Default)]
pub(super) struct LocalFiles {
    files: LocalFileSystem,
    maps: Maps,
}

/// The files mapped now, by path: each while a range of it is held, with the file it was
/// mapped from (an inode number can come back for a new file).
#[derive(Clone, Debug, Default)]
struct Maps(Arc<Mutex<HashMap<PathBuf, Held>>>);

/// A mapping while it is held, and the file it was made from.
type Held = (FileId, Weak<Mmap>);

/// A file as its metadata tells it apart: inode, size and time of last write.
type FileId = (u64, u64, i64, i64);

impl Maps {
    /// The mapping of the file at `path`: the one held already, or a new one.
    fn map(&self, path: &Path) -> std::io::Result<Arc<Mmap>> {
        let meta = std::fs::metadata(path)?;
        let id = (meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec());
        let mut maps = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = maps
            .get(path)
            .filter(|(held, _)| *held == id)
            .and_then(|(_, map)| map.upgrade())
        {
            return Ok(map);
        }
        let file = File::open(path)?;
        // SAFETY: the file is one of the warehouse's data files, never written again nor cut
        // short once committed (see the module's note); the mapping is read only.
        let map = Arc::new(unsafe { Mmap::map(&file) }?);
        maps.retain(|_, (_, map)| map.strong_count() > 0);
        maps.insert(path.to_path_buf(), (id, Arc::downgrade(&map)));
        Ok(map)
    }

    /// `ranges` of the file at `path`, each paged in before it is returned.
    fn read(&self, path: &Path, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>> {
        let map = self.map(path)?;
        let size = map.len() as u64;
        ranges
            .iter()
            .map(|range| {
                if range.start > range.end || range.end > size {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("range {range:?} is outside the file's {size} bytes"),
                    ));
                }
                // Both within the mapping, so within usize.
                let range = range.start as usize..range.end as usize;
                if range.is_empty() {
                    return Ok(Bytes::new());
                }
                // Only a head start: elsewhere, or on a kernel before 5.14, the range is paged
                // in on first touch.
                #[cfg(target_os = "linux")]
                let _ = map.advise_range(memmap2::Advice::PopulateRead, range.start, range.len());
                Ok(Bytes::from_owner(Slice {
                    map: map.clone(),
                    range,
                }))
            })
            .collect()
    }
}

impl fmt::Display for LocalFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalFiles")
    }
}

/// A range of a mapped file, which keeps the mapping while it is held.
struct Slice {
    map: Arc<Mmap>,
    range: Range<usize>,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

#[async_trait]
impl Reader for LocalFiles {
    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        ObjectStore::get_opts(&self.files, location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let path = self.files.path_to_filesystem(location)?;
        let ranges = ranges.to_vec();
        let maps = self.maps.clone();
        tokio::task::spawn_blocking(move || {
            maps.read(&path, &ranges).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => object_store::Error::NotFound {
                    path: path.display().to_string(),
                    source: Box::new(e),
                },
                _ => object_store::Error::Generic {
                    store: "LocalFiles",
                    source: format!("{}: {e}", path.display()).into(),
                },
            })
        })
        .await
        .map_err(|e| object_store::Error::JoinError { source: e })?
    }

    fn list(&self, prefix: &ObjectPath) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        ObjectStore::list(&self.files, Some(prefix))
    }

    async fn list_with_delimiter(&self, prefix: &ObjectPath) -> object_store::Result<ListResult> {
        ObjectStore::list_with_delimiter(&self.files, Some(prefix)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ranges_are_the_files_bytes_and_a_range_past_the_end_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        // More than a page, so that ranges start off page boundaries.
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let files = LocalFiles::default();
        let object =
            |p: &std::path::Path| ObjectPath::from(p.to_string_lossy().trim_start_matches('/'));
        let location = object(&path);

        let ranges = [0..10, 4090..4200, 5000..5000, 12_345..20_000];
        let got = files.get_ranges(&location, &ranges).await.unwrap();
        for (range, got) in ranges.iter().zip(&got) {
            let want = &bytes[range.start as usize..range.end as usize];
            assert_eq!(got.as_ref(), want, "{range:?}");
        }
        // A range outlives the file's name: expiry deletes files a scan may still hold.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(got[3].as_ref(), &bytes[12_345..]);

        // A new file under the old name is read anew, though the old one is still mapped.
        std::fs::write(&path, &bytes[..19_000]).unwrap();
        let again = files
            .get_ranges(&location, &[18_000..19_000, 0..0])
            .await
            .unwrap();
        assert_eq!(again[0].as_ref(), &bytes[18_000..19_000]);
        let past = files.get_ranges(&location, &[0..0, 18_000..19_001]).await;
        assert!(
            matches!(past, Err(object_store::Error::Generic { ref source, .. })
                if source.to_string().contains("outside the file")),
            "{past:?}"
        );
        let missing = object(&dir.path().join("none.bin"));
        assert!(matches!(
            files.get_ranges(&missing, &[0..1, 1..2]).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
}
