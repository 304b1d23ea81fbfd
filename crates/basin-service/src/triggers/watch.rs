//! Object-created events from buckets that are folders: the embedded default's, under
//! `.basin/buckets/NAME/`, and any `[buckets.NAME] path = ...` in basin.toml. They are
//! watched with inotify (through `notify`), plus a scan at start-up for files that arrived
//! while Basin was down. An event's id is a hash of the function, the key, the size and the
//! modification time, so a file seen by both the scan and the watcher, or scanned at every
//! start, is queued once.
//!
//! The scan leaves a file modified in the last [`SETTLE`] for later: it may still be being
//! written (the server says where it listens before the scan runs, and uploaders do not
//! wait for it), and queueing it half-written would queue it twice, once at the size the
//! scan saw and once when the watcher sees it closed. Such a file is looked at again once
//! it has been still for that long; by then the watcher has queued it if it was closed
//! after the watch began, and the second look finds the same event.
//!
//! Buckets hold plain files. A symbolic link in one (or a linked folder) is skipped with a
//! warning, by the scan and by the watcher alike, and never followed: the function would be
//! handed whatever file the link points at, anywhere Basin can read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use basin_catalog::NewEvent;
use basin_core::{Error, Result};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::Lakehouse;
use crate::deployed::DeployedFunction;
use crate::dispatch::Dispatcher;

/// Watches the buckets while it lives.
pub type BucketWatcher = Arc<Mutex<notify::RecommendedWatcher>>;

/// A watched folder: one bucket (configured), or one bucket per sub-folder (the default).
#[derive(Clone)]
struct Root {
    dir: PathBuf,
    bucket: Option<String>,
}

impl Root {
    /// The bucket and key of a file under this root.
    fn locate(&self, path: &Path) -> Option<(String, String)> {
        let relative = path.strip_prefix(&self.dir).ok()?;
        let mut parts = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let bucket = match &self.bucket {
            Some(bucket) => bucket.clone(),
            None => parts.next()?,
        };
        Some((bucket, parts.collect::<Vec<_>>().join("/")))
    }
}

/// Whether `path` is a regular file reached without a symbolic link under its root; a link
/// is logged, naming it.
fn plain_file(roots: &[Root], path: &Path) -> bool {
    match symlink_under_a_root(roots, path) {
        Some(Some(link)) => {
            tracing::warn!(
                "skipping {}: it is a symbolic link, and links in a bucket are not followed",
                link.display()
            );
            false
        }
        Some(None) => std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()),
        None => false,
    }
}

/// Whether `path` is a folder under a root, reached without a symbolic link (a folder
/// reached through one is no bucket's, as [`plain_file`] says of files).
fn plain_folder(roots: &[Root], path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
        && matches!(symlink_under_a_root(roots, path), Some(None))
}

/// For a path under one of the roots, the symbolic link on its way down from that root, if
/// any (`Some(None)`: none); `None` for a path under no root.
fn symlink_under_a_root(roots: &[Root], path: &Path) -> Option<Option<PathBuf>> {
    let root = roots.iter().find(|r| path.starts_with(&r.dir))?;
    Some(crate::links::symlink_under(&root.dir, path))
}

/// The configured folders first, so a file in one is not taken for a default bucket's.
fn roots(lakehouse: &Lakehouse) -> Vec<Root> {
    let configured = lakehouse.settings().bucket_folders.iter();
    configured
        .map(|(name, dir)| Root {
            dir: dir.clone(),
            bucket: Some(name.clone()),
        })
        .chain([Root {
            dir: lakehouse.buckets().default_dir(),
            bucket: None,
        }])
        .collect()
}

/// How long a file must have gone unmodified before the start-up scan queues it, and how
/// long apart the looks at a file that may still be being written are.
pub const SETTLE: Duration = Duration::from_secs(2);

/// A file's size and modification time when it was looked at.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Queues an event for every file in the buckets that a deployed function wants and that
/// is not queued yet, waking `dispatcher` for files it queues later (see [`SETTLE`]).
/// Returns how many were new now.
pub async fn scan(lakehouse: &Lakehouse, dispatcher: &Dispatcher) -> Result<usize> {
    let roots = roots(lakehouse);
    let now = SystemTime::now();
    let (settled, unsettled): (Vec<_>, Vec<_>) = roots
        .iter()
        .flat_map(|r| files_under(&r.dir))
        .partition(|path| match stamp(path) {
            // A file gone or unreadable is settled: `file_events` skips it.
            None => true,
            Some((_, modified)) => now.duration_since(modified).is_ok_and(|age| age >= SETTLE),
        });
    let stored = queue(lakehouse, &roots, settled).await?;
    settle(lakehouse, &roots, dispatcher, unsettled);
    Ok(stored)
}

/// Queues each of `files` once it is unchanged between two looks [`SETTLE`] apart (a file
/// dated in the future too). They are files that may have been open for writing when they
/// were found: queued then, a file would be queued twice, at the size it was found at and
/// when the watcher sees it closed; looked at until still, it is queued once, and a file
/// that was closed before it was watched is not missed.
fn settle(lakehouse: &Lakehouse, roots: &[Root], dispatcher: &Dispatcher, files: Vec<PathBuf>) {
    if files.is_empty() {
        return;
    }
    let (lakehouse, roots, dispatcher) = (lakehouse.clone(), roots.to_vec(), dispatcher.clone());
    let mut unsettled: Vec<(PathBuf, Stamp)> = files
        .into_iter()
        .map(|path| {
            let stamp = stamp(&path);
            (path, stamp)
        })
        .collect();
    tokio::spawn(async move {
        while !unsettled.is_empty() {
            tokio::time::sleep(SETTLE).await;
            let (still, changed): (Vec<_>, Vec<_>) = unsettled
                .into_iter()
                .map(|(path, before)| {
                    let now = stamp(&path);
                    (path, before, now)
                })
                .partition(|(_, before, now)| before == now);
            unsettled = changed.into_iter().map(|(p, _, now)| (p, now)).collect();
            let paths = still.iter().map(|(p, ..)| p.clone());
            match queue(&lakehouse, &roots, paths).await {
                Ok(0) => {}
                Ok(stored) => {
                    tracing::info!(events = stored, "queued objects once they were still");
                    dispatcher.wake();
                }
                Err(e) => {
                    // Tried again at the next look: they are still unchanged then.
                    tracing::error!("cannot queue events for new objects, retrying: {e}");
                    unsettled.extend(still.into_iter().map(|(p, _, now)| (p, now)));
                }
            }
        }
    });
}

/// Queues the events of the plain files among `files`; returns how many were new.
async fn queue(
    lakehouse: &Lakehouse,
    roots: &[Root],
    files: impl IntoIterator<Item = PathBuf>,
) -> Result<usize> {
    let functions = lakehouse.deployed().list().await?;
    let events: Vec<NewEvent> = files
        .into_iter()
        .filter(|path| plain_file(roots, path))
        .flat_map(|path| file_events(&functions, roots, &path))
        .collect();
    let store = lakehouse.catalog().store();
    let mut stored = 0;
    for chunk in events.chunks(1000) {
        stored += store.enqueue_events(chunk).await?;
    }
    Ok(stored)
}

/// The plain files in `dir` and the folders below it; links are skipped with a warning.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => files.push(path),
                Ok(t) if t.is_symlink() => tracing::warn!(
                    "skipping {}: it is a symbolic link, and links in a bucket are not followed",
                    path.display()
                ),
                _ => {}
            }
        }
    }
    files
}

/// Watches the buckets until the returned watcher is dropped, queueing an event for each
/// file written (closed after writing) or moved in, and waking the dispatcher.
///
/// A folder made or moved into a bucket is read whole when its event arrives: inotify
/// watches a new folder only once the watcher has seen it, so a file written into it
/// before then makes no event of its own, and the files of a folder moved in make none at
/// all. So the folder is watched first (`notify` would add the watch only after the events
/// it is reading, and a read racing it lost files of a burst), then read: a file is then
/// either read or watched, and one both read and watched is queued once. The files of a
/// folder moved in are whole, and queued at once; those of a folder just made may still be
/// being written, and are queued once still ([`settle`]).
pub fn watch(lakehouse: Lakehouse, dispatcher: Dispatcher) -> Result<BucketWatcher> {
    let roots = roots(&lakehouse);
    // Each path, and whether it is a folder just made (not moved in).
    let (tx, mut rx) = mpsc::unbounded_channel::<(PathBuf, bool)>();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let written = matches!(
            event.kind,
            EventKind::Access(notify::event::AccessKind::Close(
                notify::event::AccessMode::Write
            )) | EventKind::Modify(notify::event::ModifyKind::Name(
                notify::event::RenameMode::To | notify::event::RenameMode::Both
            )) | EventKind::Create(notify::event::CreateKind::Folder)
        );
        let made = matches!(
            event.kind,
            EventKind::Create(notify::event::CreateKind::Folder)
        );
        if written {
            for path in event.paths {
                let _ = tx.send((path, made));
            }
        }
    };
    // Not into linked folders: their files are not the bucket's.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = notify::RecommendedWatcher::new(handler, config)
        .map_err(|e| Error::io_with("cannot watch the buckets", e))?;
    for root in &roots {
        std::fs::create_dir_all(&root.dir)
            .map_err(|e| Error::io_with(format!("cannot create {}", root.dir.display()), e))?;
        watcher
            .watch(&root.dir, RecursiveMode::Recursive)
            .map_err(|e| Error::io_with(format!("cannot watch {}", root.dir.display()), e))?;
    }
    let watcher = Arc::new(Mutex::new(watcher));
    // Weak: dropping the returned watcher ends the watch, its handler, then this task.
    let weak = Arc::downgrade(&watcher);
    tokio::spawn(async move {
        let mut paths = Vec::new();
        while rx.recv_many(&mut paths, 1000).await > 0 {
            let (folders, files): (Vec<_>, Vec<_>) =
                paths.drain(..).partition(|(p, _)| plain_folder(&roots, p));
            let mut files: Vec<PathBuf> = files.into_iter().map(|(p, _)| p).collect();
            if let (false, Some(watcher)) = (folders.is_empty(), weak.upgrade()) {
                // A round trip to notify's thread: once it returns, the watches exist.
                let watched: Vec<PathBuf> = folders.iter().map(|(p, _)| p.clone()).collect();
                let _ = tokio::task::spawn_blocking(move || {
                    let mut watcher = watcher.lock().unwrap_or_else(|e| e.into_inner());
                    for folder in &watched {
                        if let Err(e) = watcher.watch(folder, RecursiveMode::Recursive) {
                            tracing::warn!("cannot watch {}: {e}", folder.display());
                        }
                    }
                })
                .await;
            }
            let mut made = Vec::new();
            for (folder, just_made) in &folders {
                match just_made {
                    true => made.extend(files_under(folder)),
                    false => files.extend(files_under(folder)),
                }
            }
            settle(&lakehouse, &roots, &dispatcher, made);
            if let Err(e) = queue(&lakehouse, &roots, files).await {
                tracing::error!("cannot queue events for new objects: {e}");
            }
            dispatcher.wake();
        }
    });
    Ok(watcher)
}

/// The events one file makes: one per function whose bucket, prefix and suffix match.
fn file_events(functions: &[DeployedFunction], roots: &[Root], path: &Path) -> Vec<NewEvent> {
    let Some((bucket, key)) = roots.iter().find_map(|root| root.locate(path)) else {
        return Vec::new();
    };
    // Hidden files are uploads in progress (`basin put` writes `.NAME.part`, then renames).
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if key.is_empty() || name.starts_with('.') {
        return Vec::new();
    }
    // Not `metadata`, which would describe a link's target.
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Vec::new();
    };
    if !meta.is_file() {
        return Vec::new();
    }
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    let etag = format!("{:x}-{:x}", modified.as_nanos(), meta.len());
    let time = chrono::DateTime::<chrono::Utc>::from(std::time::UNIX_EPOCH + modified);
    let object = super::ObjectMeta {
        bucket: &bucket,
        key: &key,
        size: meta.len(),
        etag: &etag,
        time: time.to_rfc3339(),
        source: "local",
    };
    super::object_events(functions, &object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_under_a_bucket_are_found_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("landing"), dir.path().join("secret"));
        std::fs::create_dir_all(root.join("orders")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("key.csv"), "id\n1\n").unwrap();
        std::fs::write(root.join("orders/a.csv"), "id\n2\n").unwrap();
        std::os::unix::fs::symlink(outside.join("key.csv"), root.join("orders/b.csv")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("linked")).unwrap();
        let roots = [Root {
            dir: root.clone(),
            bucket: Some("landing".into()),
        }];

        assert!(plain_file(&roots, &root.join("orders/a.csv")));
        assert_eq!(
            crate::links::symlink_under(&root, &root.join("orders/a.csv")),
            None
        );
        // A link to a file, and a file reached through a linked folder.
        assert!(!plain_file(&roots, &root.join("orders/b.csv")));
        assert!(!plain_file(&roots, &root.join("linked/key.csv")));
        assert_eq!(
            crate::links::symlink_under(&root, &root.join("linked/key.csv")),
            Some(root.join("linked"))
        );
    }
}
