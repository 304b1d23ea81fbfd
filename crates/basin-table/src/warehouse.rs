//! Where table bytes live: a local folder or an S3-compatible bucket.

use std::path::Path;
use std::sync::Arc;

use basin_catalog::Key;
use iceberg::io::{FileIO, FileIOBuilder, LocalFsStorageFactory};

use crate::error::{Error, Result};
use crate::file_sync::{FileSync, Fsync};
use crate::s3_storage::S3Settings;

/// The root under which every table gets its own folder.
#[derive(Clone, Debug)]
pub struct Warehouse {
    location: String,
    file_io: FileIO,
    /// How a commit's files are made durable before the branch moves; `None` in S3, where a
    /// completed PUT is.
    sync: Option<Arc<dyn FileSync>>,
    /// How to reach the bucket of an S3 warehouse, for listing and deleting.
    pub(crate) s3: Option<S3Settings>,
    /// Folders outside the warehouse whose files tables may name (`[warehouse]
    /// external_locations`): files added in place (`basin table add-files`). Never listed,
    /// so never deleted.
    external: Vec<String>,
}

impl Warehouse {
    /// A warehouse in a local folder (created on first write).
    pub fn local(path: &Path) -> Result<Self> {
        let path = std::path::absolute(path).map_err(|e| {
            Error::io(format!("cannot resolve warehouse path {}", path.display())).with_source(e)
        })?;
        let location = path
            .to_str()
            .ok_or_else(|| Error::invalid("the warehouse path is not UTF-8"))?;
        Ok(Self {
            location: location.trim_end_matches('/').to_string(),
            file_io: FileIOBuilder::new(Arc::new(LocalFsStorageFactory)).build(),
            sync: Some(Arc::new(Fsync)),
            s3: None,
            external: Vec::new(),
        })
    }

    /// A warehouse at `s3://bucket/prefix`.
    pub fn s3(url: &str, settings: &S3Settings) -> Result<Self> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            Error::invalid(format!("`{url}` is not an s3:// URL"))
                .with_hint("write it as s3://BUCKET/PREFIX")
        })?;
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(Error::invalid(format!("`{url}` names no bucket"))
                .with_hint("write it as s3://BUCKET/PREFIX"));
        }
        Ok(Self {
            location: url.trim_end_matches('/').to_string(),
            file_io: settings.file_io(),
            sync: None,
            s3: Some(settings.clone()),
            external: Vec::new(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether `location` lies inside this warehouse: under its location, written as the
    /// warehouse writes it (as every path Basin makes for its tables is), with no segment
    /// that is `..` or `.`, as written or once percent-decoded (`%2e%2e`, `%252e%252e`): a
    /// store or a client that decodes names would read one that climbs out, and one that
    /// does not would show a misleading name. A segment is what lies between two `/`s as
    /// written: Basin's own partition folders encode a value's slashes (`day=a%2F..`), and
    /// such a folder is one name, inside. Nothing Basin reads or writes for a client may lie
    /// elsewhere.
    pub fn contains(&self, location: &str) -> bool {
        location
            .strip_prefix(self.location.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
            && !location.split('/').any(climbs)
    }

    /// This warehouse with folders outside it whose files tables may name, each written as
    /// the warehouse's location is (an absolute path for a local warehouse, `s3://` for an
    /// S3 one: the warehouse's storage reads them).
    pub fn with_external_locations(mut self, locations: &[String]) -> Result<Self> {
        for location in locations {
            let s3 = location.starts_with("s3://");
            let absolute = location.starts_with('/');
            if s3 != self.is_s3() || (!s3 && !absolute) {
                let kind = if self.is_s3() {
                    "s3://BUCKET/PREFIX"
                } else {
                    "an absolute path"
                };
                return Err(Error::invalid(format!(
                    "`[warehouse] external_locations`: `{location}` is not {kind}, as the warehouse {} is",
                    self.location
                ))
                .with_hint("a table's files are read with the warehouse's storage: name folders of the same kind"));
            }
            if location.split('/').any(climbs) {
                return Err(Error::invalid(format!(
                    "`[warehouse] external_locations`: `{location}` has a `.` or `..` segment"
                ))
                .with_hint("write the folder's full path"));
            }
            let location = location.trim_end_matches('/');
            if location.is_empty() || location == "s3:/" {
                return Err(Error::invalid(
                    "`[warehouse] external_locations`: a root folder would let tables name any file",
                )
                .with_hint("name the folders that hold the data"));
            }
            self.external.push(location.to_string());
        }
        Ok(self)
    }

    /// Whether a table may name the file at `location`: inside the warehouse, or inside one
    /// of its external locations.
    pub fn may_name(&self, location: &str) -> bool {
        self.contains(location) || self.external_location_of(location).is_some()
    }

    /// The external location (`[warehouse] external_locations`) that holds `location`.
    pub fn external_location_of(&self, location: &str) -> Option<&str> {
        if location.split('/').any(climbs) {
            return None;
        }
        self.external
            .iter()
            .find(|root| {
                location
                    .strip_prefix(root.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            })
            .map(String::as_str)
    }

    pub fn external_locations(&self) -> &[String] {
        &self.external
    }

    pub fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    /// Creates a local warehouse's folder, if it is not there, and syncs it and the folders
    /// above it up to `root` (the lakehouse folder): a commit syncs the folders it adds up
    /// to the warehouse, so the entries naming the warehouse itself are made durable here,
    /// before a commit can name a file in it. At every open, not only when created: a Basin
    /// killed after creating it may have left the entries unsynced, and syncing folders with
    /// nothing to write costs tens of microseconds. Nothing to do in an object store.
    pub async fn create_folder(&self, root: &Path) -> Result<()> {
        let location = Path::new(&self.location);
        let Some(sync) = self.file_sync() else {
            return Ok(());
        };
        std::fs::create_dir_all(location).map_err(|e| {
            Error::io(format!(
                "cannot create the warehouse {}",
                location.display()
            ))
            .with_source(e)
        })?;
        let folders = location
            .ancestors()
            .take_while(|dir| dir.starts_with(root))
            .map(Path::to_path_buf)
            .collect();
        sync.sync(Vec::new(), folders).await.map_err(|e| {
            Error::io(format!(
                "cannot make the warehouse {} durable: {e}",
                location.display()
            ))
            .with_source(e)
        })
    }

    /// This warehouse with another way of syncing files (local warehouses only): tests record
    /// the calls.
    pub fn with_file_sync(mut self, sync: Arc<dyn FileSync>) -> Self {
        if self.sync.is_some() {
            self.sync = Some(sync);
        }
        self
    }

    pub(crate) fn file_sync(&self) -> Option<&dyn FileSync> {
        self.sync.as_deref()
    }

    pub fn is_s3(&self) -> bool {
        self.location.starts_with("s3://")
    }

    /// The bucket and the prefix of an S3 warehouse (`None` for a local one).
    pub fn s3_bucket(&self) -> Option<(&str, &str)> {
        let rest = self.location.strip_prefix("s3://")?;
        Some(rest.split_once('/').unwrap_or((rest, "")))
    }

    /// The bucket, the prefix and an operator rooted at the bucket (S3 warehouses only).
    pub fn s3_operator(&self) -> Result<(String, String, opendal::Operator)> {
        let (bucket, prefix) = self
            .s3_bucket()
            .ok_or_else(|| Error::internal("not an S3 warehouse"))?;
        let settings = self.s3.clone().unwrap_or_default();
        let operator = settings.operator(bucket, "")?;
        Ok((bucket.to_string(), prefix.to_string(), operator))
    }

    /// A fresh folder for a new table. Unique, so a table dropped on one branch and created
    /// again on another never shares files with its namesake.
    pub fn new_table_location(&self, key: &Key) -> String {
        let namespace_path = key
            .namespace()
            .map(|n| n.as_str().replace('.', "/"))
            .unwrap_or_default();
        format!(
            "{}/{}/{}-{}",
            self.location,
            namespace_path,
            key.name(),
            uuid::Uuid::now_v7().simple()
        )
    }
}

/// The table Basin made the folder holding `location` for, by the name
/// [`Warehouse::new_table_location`] gives a table's folder (`ns/name-UUID`, a namespace's
/// dots as folders): `ns.name`, and the folder (`{warehouse}/ns/name-UUID/`). `None` for a
/// location outside the warehouse or in no such folder (a table created with a location of
/// its own). The name is the one the table had when made: a renamed table keeps its folder,
/// so a door must check that the table still lies there before it trusts the name.
pub fn table_of(warehouse: &str, location: &str) -> Option<(String, String)> {
    let rest = location.strip_prefix(warehouse)?.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    segments
        .iter()
        .enumerate()
        .skip(1)
        .find_map(|(i, segment)| {
            let (name, id) = segment.rsplit_once('-')?;
            let uuid = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            (uuid && !name.is_empty()).then(|| {
                let key = format!("{}.{name}", segments[..i].join("."));
                let folder = format!("{warehouse}/{}/", segments[..=i].join("/"));
                (key, folder)
            })
        })
}

/// Whether one segment of a path is `..` or `.`, as written or percent-decoded (as often as
/// it was encoded, a few rounds at most for any honest name).
fn climbs(segment: &str) -> bool {
    let mut form = std::borrow::Cow::Borrowed(segment);
    for _ in 0..4 {
        if form == ".." || form == "." {
            return true;
        }
        let decoded = percent_encoding::percent_decode_str(&form).decode_utf8_lossy();
        if decoded == form {
            return false;
        }
        form = std::borrow::Cow::Owned(decoded.into_owned());
    }
    // Still changing after four rounds: no honest name is encoded that often.
    true
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    struct Recorded(Mutex<Vec<PathBuf>>);

    #[async_trait::async_trait]
    impl FileSync for Recorded {
        async fn sync(&self, files: Vec<PathBuf>, folders: Vec<PathBuf>) -> std::io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .extend(files.into_iter().chain(folders));
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_warehouse_folder_is_synced_with_the_folders_naming_it_at_every_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        let location = root.join(".basin").join("warehouse");
        let recorded = Arc::new(Recorded::default());
        let warehouse = Warehouse::local(&location)
            .unwrap()
            .with_file_sync(recorded.clone());
        warehouse.create_folder(&root).await.unwrap();
        assert!(location.is_dir());
        let mut synced = recorded.0.lock().unwrap().clone();
        synced.sort();
        assert_eq!(
            synced,
            vec![root.clone(), root.join(".basin"), location.clone()]
        );
        // Opened again (after a Basin killed before its sync, say): synced again.
        recorded.0.lock().unwrap().clear();
        warehouse.create_folder(&root).await.unwrap();
        assert_eq!(recorded.0.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_file_belongs_to_the_table_whose_folder_basin_made() {
        let warehouse = Warehouse::local(std::path::Path::new("/lake/wh")).unwrap();
        let root = warehouse.location();
        let key = Key::parse("sales.eu.orders").unwrap();
        let folder = warehouse.new_table_location(&key);
        let owner = Some(("sales.eu.orders".to_string(), format!("{folder}/")));
        assert_eq!(
            table_of(root, &format!("{folder}/data/day=1/a.parquet")),
            owner
        );
        assert_eq!(table_of(root, &folder), owner);
        let id = "0123456789abcdef0123456789abcdef";
        for none in [
            format!("{root}/sales/orders/data/a.parquet"),
            // A table folder needs a namespace above it.
            format!("{root}/orders-{id}/a.parquet"),
            format!("{root}/sales/orders-{}/a.parquet", id.to_uppercase()),
            format!("{root}/sales/orders-{id}x/a.parquet"),
            format!("/elsewhere/sales/orders-{id}/a.parquet"),
            format!("{root}x/sales/orders-{id}/a.parquet"),
        ] {
            assert_eq!(table_of(root, &none), None, "{none}");
        }
    }

    #[test]
    fn a_location_inside_is_inside_however_it_is_encoded() {
        let warehouse = Warehouse::local(std::path::Path::new("/lake/wh")).unwrap();
        let root = warehouse.location().to_string();
        assert!(warehouse.contains(&format!("{root}/sales/orders/data/a.parquet")));
        assert!(warehouse.contains(&format!("{root}/sales/orders/data/day=2024%2F01/a.parquet")));
        // Basin's own partition folder for the value `a/../..`: one name, inside.
        assert!(warehouse.contains(&format!("{root}/t/data/region=a%2F..%2F..%2Fetc/a.parquet")));
        for outside in [
            "/lake/other/a.parquet".to_string(),
            format!("{root}x/a.parquet"),
            format!("{root}/../a.parquet"),
            format!("{root}/./a.parquet"),
            // Encoded once, twice, in either case: a decoding store would read `..`.
            format!("{root}/%2e%2e/a.parquet"),
            format!("{root}/%2E%2E/secrets"),
            format!("{root}/%252e%252e/a.parquet"),
            format!("{root}/t/%2e/a.parquet"),
            format!("{root}/t/%25252525252e/a.parquet"),
        ] {
            assert!(!warehouse.contains(&outside), "{outside}");
        }
    }
}
