//! A deploy over the HTTP API (`basin --remote URL deploy DIR`): the folder's files arrive
//! in the request, are laid out in a folder of the deploying principal's own on the server,
//! and are deployed from there as `basin deploy` deploys a local folder.

use std::collections::BTreeMap;

use basin_core::{Error, Result};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::Triggers;
use super::deploy::DeployPlan;

/// The most files one deploy may carry.
pub const MAX_FILES: usize = 200;

/// One deploy at a time: each lays out its principal's folder and reads it back.
static DEPLOYING: Mutex<()> = Mutex::const_new(());

/// Whether `name` is a file a deploy reads: a `.py` file or `basin.toml`, at the top of
/// the folder (no path: nothing can land outside the folder).
pub fn is_deployable(name: &str) -> bool {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    plain && (name.ends_with(".py") || name == "basin.toml")
}

impl Triggers<'_> {
    /// Deploys `files` (file name -> text) as the acting principal: see
    /// [`Triggers::deploy`]. The files are written to a folder kept for that principal (so
    /// the declarations read from them stay cached), replaced at each deploy.
    pub async fn deploy_files(
        &self,
        files: &BTreeMap<String, String>,
        apply: bool,
    ) -> Result<DeployPlan> {
        if files.len() > MAX_FILES {
            return Err(Error::invalid(format!(
                "a deploy carries at most {MAX_FILES} files, not {}",
                files.len()
            ))
            .with_hint("split the functions into folders of their own"));
        }
        if let Some(bad) = files.keys().find(|name| !is_deployable(name)) {
            return Err(
                Error::invalid(format!("`{bad}` is not a file a deploy reads")).with_hint(
                    "send the folder's .py files and its basin.toml, by their names alone",
                ),
            );
        }
        let principal = self.lake.catalog().principal();
        let id: String = Sha256::digest(principal.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let folder = self.lake.tools_dir().join("deploys").join(id);
        let _one = DEPLOYING.lock().await;
        let io =
            |e: std::io::Error| Error::io_with(format!("cannot lay out {}", folder.display()), e);
        match std::fs::remove_dir_all(&folder) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        std::fs::create_dir_all(&folder).map_err(io)?;
        for (name, text) in files {
            std::fs::write(folder.join(name), text).map_err(io)?;
        }
        self.deploy(&folder, apply).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_python_files_and_basin_toml_by_their_names_alone() {
        for good in ["score.py", "basin.toml", "a-b_c.v2.py"] {
            assert!(is_deployable(good), "{good}");
        }
        for bad in [
            "",
            "../x.py",
            "a/b.py",
            ".hidden.py",
            "x.sh",
            "basin.toml.py.sh",
            "x.py\0",
            "ü.py",
            "..py",
        ] {
            assert!(!is_deployable(bad), "{bad}");
        }
    }
}
