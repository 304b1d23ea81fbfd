//! Symbolic links under a folder Basin reads from: buckets skip them, so a link never
//! carries a function or a watcher outside the folder.

use std::path::{Path, PathBuf};

/// The first symbolic link on the way down from `root` to `path`, `path` included (`root`
/// itself is the user's choice of folder and may be a link).
pub(crate) fn symlink_under(root: &Path, path: &Path) -> Option<PathBuf> {
    let relative = path.strip_prefix(root).ok()?;
    let mut at = root.to_path_buf();
    for part in relative.components() {
        at.push(part);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(at);
        }
    }
    None
}
