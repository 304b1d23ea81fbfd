//! The Python SDK (`python/basin`), built into the binary and installed into every
//! environment, so functions `import basin` without the user installing anything.

use std::path::{Path, PathBuf};

use basin_core::{Error, Result};
use sha2::{Digest, Sha256};

/// The SDK's files, relative to site-packages.
const FILES: &[(&str, &str)] = &[
    (
        "basin/__init__.py",
        include_str!("../../../python/basin/__init__.py"),
    ),
    (
        "basin/decorators.py",
        include_str!("../../../python/basin/decorators.py"),
    ),
    (
        "basin/spec.py",
        include_str!("../../../python/basin/spec.py"),
    ),
    (
        "basin/_kernel.py",
        include_str!("../../../python/basin/_kernel.py"),
    ),
    (
        "basin/_namespaces.py",
        include_str!("../../../python/basin/_namespaces.py"),
    ),
    (
        "basin/_sandbox.py",
        include_str!("../../../python/basin/_sandbox.py"),
    ),
    (
        "basin/_internet.py",
        include_str!("../../../python/basin/_internet.py"),
    ),
    (
        "basin/_worker.py",
        include_str!("../../../python/basin/_worker.py"),
    ),
    (
        "basin/_invocation.py",
        include_str!("../../../python/basin/_invocation.py"),
    ),
    ("basin/py.typed", ""),
];

/// A digest of the SDK's contents: part of every environment's hash, so a new SDK gets new
/// environments instead of stale copies.
pub(crate) fn digest() -> String {
    let mut hasher = Sha256::new();
    for (path, text) in FILES {
        hasher.update(path.as_bytes());
        hasher.update(text.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes the SDK into the environment at `env` (a venv).
pub(crate) fn install(env: &Path) -> Result<()> {
    let lib = env.join("lib");
    let site = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .ok_or_else(|| Error::internal(format!("no site-packages under {}", lib.display())))?;
    write_files(&site)
}

/// The SDK as a folder for any interpreter's `sys.path` (`tools/sdk-DIGEST`), written once.
pub(crate) fn materialize(tools: &Path) -> Result<PathBuf> {
    let dir = tools.join(format!("sdk-{}", digest()));
    if dir.join("basin").is_dir() {
        return Ok(dir);
    }
    let staging = tools.join(format!(".tmp-sdk-{}", basin_core::ids::random()));
    write_files(&staging)?;
    if let Err(e) = std::fs::rename(&staging, &dir) {
        let _ = std::fs::remove_dir_all(&staging);
        if !dir.join("basin").is_dir() {
            return Err(Error::io_with(format!("cannot write {}", dir.display()), e));
        }
    }
    Ok(dir)
}

fn write_files(site: &Path) -> Result<()> {
    for (path, text) in FILES {
        let target = site.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io_with(format!("cannot create {}", parent.display()), e))?;
        }
        std::fs::write(&target, text)
            .map_err(|e| Error::io_with(format!("cannot write {}", target.display()), e))?;
    }
    Ok(())
}
