//! Finding (or installing) `uv` and running it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use basin_core::{Error, Result};
use tokio::process::Command;

/// `uv` on `search_path` (a PATH-style list), else beside the running `basin` (the wheel
/// installs both into one `bin/`, which need not be on PATH), else in `tools/uv`, else
/// installed there with pip (once; concurrent callers wait on a lock).
pub(crate) async fn find_or_install(
    tools: &Path,
    search_path: Option<&OsString>,
) -> Result<PathBuf> {
    let on_path = search_path.and_then(|p| {
        std::env::split_paths(p)
            .map(|d| d.join("uv"))
            .find(|c| c.is_file())
    });
    let beside_basin = || {
        let exe = std::env::current_exe().ok()?;
        Some(exe.parent()?.join("uv")).filter(|c| c.is_file())
    };
    if let Some(found) = on_path.or_else(beside_basin) {
        return Ok(found);
    }
    let installed = tools.join("uv").join("bin").join("uv");
    if installed.is_file() {
        return Ok(installed);
    }
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| Error::io_with(&what, e)
    };
    std::fs::create_dir_all(tools).map_err(io(&format!("cannot create {}", tools.display())))?;
    let lock_path = tools.join("uv.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(io(&format!("cannot create {}", lock_path.display())))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|_| lock))
        .await
        .map_err(|e| Error::internal(format!("waiting for the uv install lock: {e}")))?
        .map_err(io("cannot lock the uv install"))?;
    if !installed.is_file() {
        let venv = tools.join("uv");
        run_checked(
            // Isolated (-I): the current folder is not on Python's path, so a project's own
            // `token.py` cannot stand in for the standard library's while venv runs.
            Command::new("python3")
                .args(["-I", "-m", "venv"])
                .arg(&venv)
                .current_dir(tools),
            "create a venv for uv",
        )
        .await?;
        run_checked(
            Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "uv"])
                .current_dir(tools),
            "install uv with pip",
        )
        .await
        .map_err(|e| e.with_hint("Basin needs uv to build function environments; install it (pip install uv) or check access to PyPI"))?;
    }
    drop(lock);
    Ok(installed)
}

/// Runs a command; a non-zero exit is an error carrying its stderr.
pub(crate) async fn run_checked(command: &mut Command, what: &str) -> Result<Output> {
    let output = command
        .output()
        .await
        .map_err(|e| Error::io_with(format!("cannot {what}"), e))?;
    if output.status.success() {
        Ok(output)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(Error::invalid(format!(
            "cannot {what}:\n{}",
            stderr.trim_end()
        )))
    }
}
