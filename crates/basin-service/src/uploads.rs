//! Folders sent over the HTTP API: a deploy's functions (`basin --remote URL deploy DIR`) and
//! a pipeline project (`basin --remote URL run DIR`). The files arrive in the request, are laid
//! out in a folder of the sending principal's own on the server, and are read from there as
//! the local commands read a folder.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use basin_core::{Error, Result};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::Lakehouse;

/// The most files one folder may carry.
pub const MAX_FILES: usize = 200;

/// A lock per laid-out folder, held while a deploy (or run) reads it.
static FOLDERS: std::sync::LazyLock<std::sync::Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> =
    std::sync::LazyLock::new(Default::default);

/// A plain file name: no path (nothing can land outside the folder), not hidden.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `name` is a file a deploy reads: a `.py` file or `basin.toml`.
pub fn is_deployable(name: &str) -> bool {
    plain(name) && (name.ends_with(".py") || name == "basin.toml")
}

/// Whether `name` is a file a pipeline project holds: `.py`, `.sql` or `basin.toml`.
pub fn is_project_file(name: &str) -> bool {
    is_deployable(name) || (plain(name) && name.ends_with(".sql"))
}

/// A sent folder, laid out; kept for it until this is dropped.
pub struct LaidOut {
    pub dir: PathBuf,
    _one: OwnedMutexGuard<()>,
}

impl LaidOut {
    /// `error` with the files named as they were sent (`totals.sql`), not by where they were
    /// laid out on the server.
    pub fn as_sent(&self, error: Error) -> Error {
        let folder = format!("{}/", self.dir.display());
        let mut sent = Error::new(error.kind(), error.message.replace(&folder, ""));
        if let Some(hint) = &error.hint {
            sent = sent.with_hint(hint.replace(&folder, ""));
        }
        sent
    }
}

/// Lays out `files` (file name -> text, each passing `allowed`) in a folder for `purpose`
/// (`deploys`, `runs`) of the sender's own: the first of its folders no other deploy or run
/// reads now, replacing what an earlier one left there (so what is cached by path, a file's
/// declarations, stays cached). The sender is the token acting (by id: names may be empty
/// and shared), else the principal; its folders are as many as it sends at once, which the
/// server bounds (`[server] max_runs_per_writer`).
pub async fn lay_out(
    lake: &Lakehouse,
    purpose: &str,
    files: &BTreeMap<String, String>,
    allowed: fn(&str) -> bool,
) -> Result<LaidOut> {
    if files.len() > MAX_FILES {
        return Err(Error::invalid(format!(
            "a folder sent to Basin holds at most {MAX_FILES} files, not {}",
            files.len()
        ))
        .with_hint("split it into folders of their own"));
    }
    if let Some(bad) = files.keys().find(|name| !allowed(name)) {
        return Err(
            Error::invalid(format!("`{bad}` is not a file Basin reads here")).with_hint(
                "send the folder's .py (and for a project .sql) files and its basin.toml, by their names alone",
            ),
        );
    }
    let sender = basin_catalog::actor::current()
        .and_then(|actor| actor.token_id)
        .map(|id| format!("token:{id}"))
        .unwrap_or_else(|| lake.catalog().principal());
    let id: String = Sha256::digest(sender.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (dir, one) = free_folder(&lake.tools_dir().join(purpose).join(id));
    let io = |e: std::io::Error| Error::io_with(format!("cannot lay out {}", dir.display()), e);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    std::fs::create_dir_all(&dir).map_err(io)?;
    for (name, text) in files {
        std::fs::write(dir.join(name), text).map_err(io)?;
    }
    Ok(LaidOut { dir, _one: one })
}

/// The first folder `0`, `1`, ... under `sender` that nothing reads now, locked.
fn free_folder(sender: &std::path::Path) -> (PathBuf, OwnedMutexGuard<()>) {
    let mut folders = FOLDERS.lock().expect("folder locks");
    (0..)
        .find_map(|n: usize| {
            let dir = sender.join(n.to_string());
            let lock = folders.entry(dir.clone()).or_default().clone();
            lock.try_lock_owned().ok().map(|one| (dir, one))
        })
        .expect("a free folder: every sender holds finitely many")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_gets_a_folder_of_its_own_that_nothing_else_reads_now() {
        let sender = std::env::temp_dir().join(format!("sender-{}", basin_core::ids::random()));
        let (first, held) = free_folder(&sender);
        let (second, _held_too) = free_folder(&sender);
        assert_eq!(
            (first.clone(), second),
            (sender.join("0"), sender.join("1"))
        );
        drop(held);
        // Freed, the first folder is the one reused (what is cached by its path stays).
        assert_eq!(free_folder(&sender).0, first);
    }

    #[test]
    fn only_the_files_basin_reads_by_their_names_alone() {
        for good in ["score.py", "basin.toml", "a-b_c.v2.py"] {
            assert!(is_deployable(good) && is_project_file(good), "{good}");
        }
        assert!(is_project_file("daily.sql") && !is_deployable("daily.sql"));
        for bad in [
            "",
            "../x.py",
            "a/b.py",
            ".hidden.py",
            "x.sh",
            "basin.toml.sh",
            "x.py\0",
            "ü.py",
            "..py",
            "../x.sql",
        ] {
            assert!(!is_deployable(bad) && !is_project_file(bad), "{bad}");
        }
    }
}
