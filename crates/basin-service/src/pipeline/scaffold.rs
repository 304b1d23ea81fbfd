//! `basin init --project`: a small working project (raw orders -> cleaned in Python ->
//! revenue in SQL, with an expectation), written into a folder.

use std::path::{Path, PathBuf};

use basin_core::{Error, Result};

/// The files, relative to the project folder.
const FILES: &[(&str, &str)] = &[
    ("basin.toml", include_str!("scaffold/basin.toml")),
    ("clean_orders.py", include_str!("scaffold/clean_orders.py")),
    ("revenue.sql", include_str!("scaffold/revenue.sql")),
    ("checks.py", include_str!("scaffold/checks.py")),
    (
        "data/raw_orders.csv",
        include_str!("scaffold/raw_orders.csv.txt"),
    ),
];

/// The table the example reads, and the file it is imported from.
pub const RAW_TABLE: &str = "shop.raw_orders";
pub const RAW_FILE: &str = "data/raw_orders.csv";

/// Writes the example project into `dir`; refuses to overwrite a file.
pub fn write(dir: &Path) -> Result<Vec<PathBuf>> {
    for (name, _) in FILES {
        if dir.join(name).exists() {
            return Err(Error::new(
                basin_core::ErrorKind::AlreadyExists,
                format!("{} already exists", dir.join(name).display()),
            )
            .with_hint("scaffold into an empty folder: basin init --project NEW_DIR"));
        }
    }
    let mut written = Vec::new();
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io_with(parent.display(), e))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| Error::io_with(format!("cannot write {}", path.display()), e))?;
        written.push(path);
    }
    Ok(written)
}
