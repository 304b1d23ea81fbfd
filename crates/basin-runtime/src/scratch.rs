//! The runtime's scratch folder (`/dev/shm/basin-<id>`): invocation folders and the handoff
//! pool, in memory. A runtime removes it when it ends; one that was killed (SIGKILL, the
//! OOM killer, a crash) cannot, and its files would hold memory until the machine restarts.
//! So each runtime holds a lock on `.owner` in its folder for as long as it lives, and a
//! runtime starting removes the folders whose lock nobody holds: the kernel releases a
//! `flock` when its process dies, however it dies. Folders without an `.owner` (an older
//! Basin's) are left as they are.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use basin_core::{Error, Result};

const PREFIX: &str = "basin-";
const OWNER: &str = ".owner";

/// An I/O error about `what`, keeping the OS error as its cause.
pub(crate) fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what).with_source(e)
}

/// Creates `dir` (and missing parents) readable by its owner only: other users of the
/// machine must not read invocations' inputs in shared memory.
pub(crate) fn private_folder(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(format!("cannot create {}", dir.display())))
}

/// A new scratch folder in `base`, locked for as long as the returned file is open. It is
/// made under a hidden name and renamed once locked, so no sweep sees it unlocked.
pub(crate) fn claim(base: &Path) -> Result<(PathBuf, File)> {
    let id = uuid::Uuid::new_v4().simple();
    let hidden = base.join(format!(".{PREFIX}{id}"));
    private_folder(&hidden)?;
    let path = hidden.join(OWNER);
    let owner = File::create(&path).map_err(io(format!("cannot create {}", path.display())))?;
    owner
        .lock()
        .map_err(io(format!("cannot lock {}", path.display())))?;
    let scratch = base.join(format!("{PREFIX}{id}"));
    std::fs::rename(&hidden, &scratch)
        .map_err(io(format!("cannot rename {}", hidden.display())))?;
    Ok((scratch, owner))
}

/// Removes the scratch folders in `base` that this user owns and no live runtime holds;
/// returns how many. Best effort: a folder that cannot be read or removed is left.
pub(crate) fn sweep(base: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != uid || !abandoned(&dir) {
            continue;
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether `dir` has an `.owner` whose lock no runtime holds. A folder without one is left
/// alone: an older Basin's, or not Basin's at all (the scratch base may be `/tmp`).
fn abandoned(dir: &Path) -> bool {
    // The lock is ours until this file closes, at the end of this call; the folder is
    // removed right after, and no runtime takes an existing folder back.
    File::open(dir.join(OWNER)).is_ok_and(|owner| owner.try_lock().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_whose_owner_died_is_removed_and_a_live_ones_stays() {
        let base = tempfile::tempdir().unwrap();
        let (live, _held) = claim(base.path()).unwrap();
        let (dead, owner) = claim(base.path()).unwrap();
        std::fs::write(dead.join("input-0.arrow"), b"left behind").unwrap();
        drop(owner); // as when its process is killed
        // Not Basin's, and one without an owner (an older Basin's, or a user's): both kept.
        std::fs::create_dir(base.path().join("other")).unwrap();
        let older = base.path().join(format!("{PREFIX}older"));
        std::fs::create_dir(&older).unwrap();

        assert_eq!(sweep(base.path()), 1);
        assert!(!dead.exists(), "the dead runtime's folder is removed");
        assert!(live.join(OWNER).exists(), "the live one's stays");
        assert!(base.path().join("other").exists() && older.exists());
        assert_eq!(sweep(base.path()), 0);
    }
}

/// A folder removed with everything in it once the last holder drops it: a kept process's
/// folder (`[functions] reuse`), which holds the folders of the invocations it serves.
#[derive(Debug)]
pub(crate) struct Folder(PathBuf);

impl Folder {
    pub(crate) fn create(dir: PathBuf) -> Result<Self> {
        private_folder(&dir)?;
        Ok(Self(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
