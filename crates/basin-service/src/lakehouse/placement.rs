//! Where a new lakehouse keeps its data and its catalog (`basin init --warehouse --catalog`),
//! and the checks that keep the nodes of a shared one on the same data.
//!
//! A lakehouse whose catalog several nodes share (Postgres) needs a warehouse every node
//! reads: an S3 bucket, or a folder every node mounts at the same path (NFS, EFS, or simply
//! this one machine). A folder cannot prove by its name that it is the shared one: an
//! unmounted `/mnt/lake` is an empty folder like any other. So the first node writes a mark
//! into it, `.basin-lakehouse`, holding a random id the catalog keeps too, and every node
//! checks the mark whenever it opens the lakehouse.

use std::path::Path;

use basin_catalog::Store;
use basin_core::{Error, Result};

/// Where a new lakehouse keeps its data and its catalog (`basin init --warehouse --catalog`).
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// An `s3://BUCKET/PREFIX` URL for data in an S3-compatible store, or a folder (a path or
    /// a `file://` URL); the default is `.basin/warehouse`.
    pub warehouse: Option<String>,
    /// A `postgres://USER@HOST/DATABASE` URL for a catalog several nodes share; the default is
    /// SQLite in `.basin/catalog.db`.
    pub catalog: Option<String>,
}

/// The catalog setting naming the warehouse of a lakehouse whose catalog nodes share.
pub(super) const WAREHOUSE_SETTING: &str = "warehouse";

/// The catalog setting holding the id the mark in a shared warehouse folder holds.
const MARK_SETTING: &str = "warehouse_mark";

/// The file in a shared warehouse folder that shows a node it sees the shared folder.
const MARK_FILE: &str = ".basin-lakehouse";

/// The location a `--warehouse` names, as the lakehouse keeps it: an `s3://` URL without a
/// trailing slash, or an absolute folder (a relative one is taken from the working folder).
pub(super) fn warehouse_location(given: &str) -> Result<String> {
    let hint = "give s3://BUCKET/PREFIX for a bucket, or a folder (every node of a shared \
                lakehouse must mount it at that same path)";
    if given.starts_with("s3://") {
        return Ok(given.trim_end_matches('/').to_string());
    }
    let path = match given.strip_prefix("file://") {
        Some(path) if path.starts_with('/') => path,
        Some(_) => {
            return Err(
                Error::invalid(format!("`{given}` is not a file:// URL of a folder"))
                    .with_hint("write it as file:///ABSOLUTE/PATH"),
            );
        }
        None if given.contains("://") => {
            return Err(
                Error::invalid(format!("`{given}` is neither an s3:// URL nor a folder"))
                    .with_hint(hint),
            );
        }
        None => given,
    };
    let absolute = std::path::absolute(path)
        .map_err(|e| Error::io(format!("cannot resolve the folder {path}")).with_source(e))?;
    let location = absolute
        .to_str()
        .ok_or_else(|| Error::invalid(format!("the folder `{given}` is not named in UTF-8")))?
        .trim_end_matches('/');
    if location.is_empty() {
        return Err(Error::invalid("the warehouse cannot be the root folder `/`").with_hint(hint));
    }
    Ok(location.to_string())
}

/// The warehouse of a new node of the lakehouse whose catalog is at `url`: the one its
/// catalog names, or `given` for a new lakehouse. A shared catalog needs a shared warehouse.
pub(super) async fn shared_warehouse(
    store: &dyn Store,
    url: &str,
    given: Option<String>,
) -> Result<String> {
    match (given, store.setting(WAREHOUSE_SETTING).await?) {
        (Some(given), Some(known)) if given != known => Err(other_warehouse(&known, &given)),
        (Some(given), _) => Ok(given),
        (None, Some(known)) => Ok(known),
        (None, None) => Err(Error::invalid(format!(
            "the catalog at {url} is new, and a lakehouse with a shared catalog needs a shared warehouse"
        ))
        .with_hint("give --warehouse s3://BUCKET/PREFIX, or a folder every node mounts at the same path (the nodes after this one find it in the catalog)")),
    }
}

pub(super) fn other_warehouse(known: &str, given: &str) -> Error {
    Error::invalid(format!(
        "this catalog's lakehouse keeps its data in {known}, not {given}"
    ))
    .with_hint(format!(
        "give --warehouse {known}, or leave --warehouse out"
    ))
}

/// Marks `folder` as the shared warehouse of the lakehouse whose catalog is `store`, if no
/// node has fixed the warehouse yet (this is the first node, or a first that failed before
/// it could); then checks the mark, as opening the lakehouse does on every node at every
/// start (here too, so a node that does not see the mark leaves nothing behind).
pub(super) async fn mark_shared_folder(store: &dyn Store, folder: &str) -> Result<()> {
    let id = store
        .fix_setting(MARK_SETTING, &basin_core::ids::random())
        .await?;
    let mark = Path::new(folder).join(MARK_FILE);
    if store.setting(WAREHOUSE_SETTING).await?.is_none() && !mark.exists() {
        std::fs::create_dir_all(folder).map_err(|e| {
            Error::io(format!("cannot create the warehouse {folder}")).with_source(e)
        })?;
        // Written whole or not at all: a node must never read half an id.
        let partial = mark.with_extension("partial");
        std::fs::write(&partial, &id)
            .and_then(|()| std::fs::File::open(&partial)?.sync_all())
            .and_then(|()| std::fs::rename(&partial, &mark))
            .map_err(|e| Error::io(format!("cannot write {}", mark.display())).with_source(e))?;
    }
    check_mark(folder, Some(&id))
}

/// Refuses a shared warehouse folder that does not hold the mark of this lakehouse's first
/// node: the shared folder is not mounted here (this node would see none of the data, and
/// other nodes none of what it writes), or it is another lakehouse's.
pub(super) async fn check_shared_folder(store: &dyn Store, folder: &str) -> Result<()> {
    check_mark(folder, store.setting(MARK_SETTING).await?.as_deref())
}

/// [`check_shared_folder`] once the catalog's id (`expected`) is known.
fn check_mark(folder: &str, expected: Option<&str>) -> Result<()> {
    let mark = Path::new(folder).join(MARK_FILE);
    let found = match std::fs::read_to_string(&mark) {
        Ok(found) => Some(found),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Error::io(format!("cannot read {}", mark.display())).with_source(e));
        }
    };
    match (expected, found) {
        (Some(expected), Some(found)) if expected == found.trim() => Ok(()),
        (_, None) => Err(Error::invalid(format!(
            "the warehouse folder {folder} does not hold this lakehouse's data on this node ({} is missing)",
            mark.display()
        ))
        .with_hint(format!(
            "every node of a lakehouse with a shared catalog must see the same warehouse: mount the shared folder (NFS, EFS, ...) at {folder} on this node, then try again"
        ))),
        (_, Some(_)) => Err(Error::invalid(format!(
            "the warehouse folder {folder} holds another lakehouse's data ({} names another catalog)",
            mark.display()
        ))
        .with_hint(format!(
            "mount this lakehouse's shared folder at {folder}, or give the catalog of the lakehouse whose folder it is"
        ))),
    }
}

/// A catalog URL as `.basin/config.toml` may hold it: Postgres, and no password in it.
pub(super) fn check_catalog_url(url: &str) -> Result<String> {
    let example = "postgres://USER@HOST:5432/DATABASE, the password in PGPASSWORD or ~/.pgpass";
    let parsed = url::Url::parse(url).map_err(|e| {
        Error::invalid(format!("cannot read the catalog url `{url}`: {e}")).with_hint(example)
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(
            Error::invalid(format!("`{url}` is not a postgres:// url")).with_hint(format!(
                "a shared catalog is a Postgres database ({example}); leave out --catalog for SQLite in .basin/"
            )),
        );
    }
    if parsed.password().is_some() {
        // Not echoed back: the message must not put the password in a terminal's scrollback.
        return Err(Error::invalid(
            "the catalog url holds a password, which .basin/config.toml must not",
        )
        .with_hint("take it out of the url and export PGPASSWORD=... (or write it in ~/.pgpass)"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warehouse_is_a_bucket_or_a_folder() {
        assert_eq!(warehouse_location("s3://lake/wh/").unwrap(), "s3://lake/wh");
        assert_eq!(warehouse_location("/mnt/lake/").unwrap(), "/mnt/lake");
        assert_eq!(warehouse_location("file:///mnt/lake").unwrap(), "/mnt/lake");
        let relative = warehouse_location("lake").unwrap();
        assert!(
            relative.starts_with('/') && relative.ends_with("/lake"),
            "{relative}"
        );
        for wrong in ["gs://lake/wh", "file://host/lake", "/", "file:///"] {
            let e = warehouse_location(wrong).unwrap_err();
            assert!(e.hint.is_some(), "{wrong}: {e}");
        }
    }
}
