//! The object stores SQL may open: the warehouse's files, read only, and nothing else. Table
//! scans (local, and on Ballista's scheduler and executors) read their data files through
//! them; a plan that named any other path would find nothing to open.
//!
//! One wall, [`ReadOnly`], over two readers: the local file system ([`local`]), and the
//! warehouse's S3 bucket ([`bucket`]).

mod bucket;
mod local;
mod reader;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use basin_core::Error;
use bytes::Bytes;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreRegistry;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use url::Url;

use self::reader::Reader;
use crate::limits::LimitCounters;

/// The warehouse's files, as the SQL engine may read them.
#[derive(Clone, Debug, Default)]
pub enum WarehouseFiles {
    /// None (an engine for tests, or one with no lakehouse).
    #[default]
    None,
    /// A local folder.
    Local(PathBuf),
    /// An S3-compatible bucket; `operator` is rooted at the bucket.
    S3 {
        bucket: String,
        prefix: String,
        operator: opendal::Operator,
    },
}

impl WarehouseFiles {
    /// The warehouse's location as tables name their files: a folder path or
    /// `s3://BUCKET/PREFIX`.
    pub(crate) fn root(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Local(path) => Some(path.to_string_lossy().trim_end_matches('/').to_string()),
            Self::S3 { bucket, prefix, .. } => Some(
                format!("s3://{bucket}/{}", prefix.trim_matches('/'))
                    .trim_end_matches('/')
                    .to_string(),
            ),
        }
    }
}

/// The stores SQL may open: the warehouse's, by its scheme (and bucket); no other.
#[derive(Debug)]
pub(crate) struct WarehouseOnly {
    files: Option<Arc<dyn ObjectStore>>,
    bucket: Option<(String, Arc<dyn ObjectStore>)>,
}

impl WarehouseOnly {
    /// The stores of `warehouse`; an S3 one has at most `s3_reads` requests in flight, counted
    /// in `counters`.
    pub(crate) fn new(
        warehouse: &WarehouseFiles,
        s3_reads: usize,
        counters: Arc<LimitCounters>,
    ) -> Self {
        match warehouse {
            WarehouseFiles::None => Self {
                files: None,
                bucket: None,
            },
            WarehouseFiles::Local(root) => {
                let prefix = root.to_string_lossy().trim_matches('/').to_string();
                Self {
                    // A warehouse at `/` would let every file in: then none is.
                    files: (!prefix.is_empty()).then(|| {
                        Arc::new(ReadOnly {
                            inner: local::LocalFiles::default(),
                            prefix: Some(prefix),
                        }) as Arc<dyn ObjectStore>
                    }),
                    bucket: None,
                }
            }
            WarehouseFiles::S3 {
                bucket,
                prefix,
                operator,
            } => {
                let prefix = prefix.trim_matches('/');
                let store = ReadOnly {
                    inner: bucket::Bucket {
                        name: bucket.clone(),
                        operator: operator.clone(),
                        slots: bucket::Slots::new(s3_reads, counters),
                    },
                    // The warehouse at the bucket's root: all of the bucket.
                    prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
                };
                Self {
                    files: None,
                    bucket: Some((bucket.clone(), Arc::new(store))),
                }
            }
        }
    }
}

impl ObjectStoreRegistry for WarehouseOnly {
    fn register_store(
        &self,
        url: &Url,
        _store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        tracing::warn!(%url, "refused to register an object store for SQL");
        None
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        match (&self.files, &self.bucket, url.scheme()) {
            (Some(files), _, "file") => Ok(files.clone()),
            (_, Some((bucket, store)), "s3") if url.host_str() == Some(bucket.as_str()) => {
                Ok(store.clone())
            }
            _ => Err(DataFusionError::External(Box::new(
                Error::invalid(format!("SQL cannot open `{url}`"))
                    .with_hint("queries read the lakehouse's tables by name, e.g. `sales.orders`"),
            ))),
        }
    }
}

/// `inner`, read only, and only under `prefix` (`None`: all of it).
#[derive(Debug)]
struct ReadOnly<R> {
    inner: R,
    /// An object path (no leading or trailing `/`).
    prefix: Option<String>,
}

impl<R: Reader> fmt::Display for ReadOnly<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ReadOnly({}, {})",
            self.inner,
            self.prefix.as_deref().unwrap_or("")
        )
    }
}

impl<R> ReadOnly<R> {
    fn inside(&self, location: &ObjectPath) -> object_store::Result<()> {
        let path = location.as_ref();
        let inside = self.prefix.as_deref().is_none_or(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
        });
        if inside {
            Ok(())
        } else {
            Err(object_store::Error::NotFound {
                path: path.to_string(),
                source: "outside the warehouse: SQL reads only the lakehouse's tables".into(),
            })
        }
    }

    fn refuse(location: &ObjectPath) -> object_store::Error {
        object_store::Error::NotSupported {
            source: format!("SQL never writes files (`/{location}`)").into(),
        }
    }
}

#[async_trait]
impl<R: Reader> ObjectStore for ReadOnly<R> {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(Self::refuse(location))
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(Self::refuse(location))
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inside(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inside(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        locations
            .map(|location| Err(Self::refuse(&location?)))
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match prefix.map(|p| (p, self.inside(p))) {
            Some((p, Ok(()))) => self.inner.list(p),
            Some((_, Err(e))) => futures::stream::once(async move { Err(e) }).boxed(),
            None => futures::stream::empty().boxed(),
        }
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        match prefix {
            Some(p) => {
                self.inside(p)?;
                self.inner.list_with_delimiter(p).await
            }
            None => Ok(ListResult {
                common_prefixes: Vec::new(),
                objects: Vec::new(),
            }),
        }
    }

    async fn copy_opts(
        &self,
        _from: &ObjectPath,
        to: &ObjectPath,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(Self::refuse(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use std::path::Path;

    #[tokio::test]
    async fn sql_reads_files_only_inside_the_warehouse_and_writes_none() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = dir.path().join("warehouse");
        std::fs::create_dir_all(&warehouse).unwrap();
        std::fs::write(warehouse.join("data.txt"), "inside").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
        let registry =
            WarehouseOnly::new(&WarehouseFiles::Local(warehouse.clone()), 1, Arc::default());
        let url = |p: &Path| Url::from_file_path(p).unwrap();
        let store = registry.get_store(&url(&warehouse)).unwrap();
        let path = |p: &Path| ObjectPath::from(p.to_string_lossy().trim_start_matches('/'));

        let inside = store.get(&path(&warehouse.join("data.txt"))).await.unwrap();
        assert_eq!(inside.bytes().await.unwrap().as_ref(), b"inside");
        let outside = store.get(&path(&dir.path().join("secret.txt"))).await;
        assert!(matches!(outside, Err(object_store::Error::NotFound { .. })));
        let sibling = ObjectPath::from(format!(
            "{}-other/x",
            warehouse.to_string_lossy().trim_matches('/')
        ));
        assert!(
            store.head(&sibling).await.is_err(),
            "a sibling folder is outside"
        );
        let write = store
            .put(&path(&warehouse.join("new.txt")), PutPayload::from("x"))
            .await;
        assert!(matches!(
            write,
            Err(object_store::Error::NotSupported { .. })
        ));
        assert!(!warehouse.join("new.txt").exists());

        assert!(
            registry
                .get_store(&Url::parse("s3://bucket/x").unwrap())
                .is_err()
        );
        assert!(
            WarehouseOnly::new(&WarehouseFiles::None, 1, Arc::default())
                .get_store(&url(&warehouse))
                .is_err()
        );
    }
}
