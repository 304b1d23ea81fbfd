//! The warehouse's S3 bucket as a read-only `ObjectStore`, so DataFusion's Parquet reader
//! (and Ballista's executors) can scan tables in object storage as they scan local ones.
//!
//! Written here on the opendal operator Basin already has: `object_store`'s own S3 client
//! would bring a second HTTP and TLS stack, and `object_store_opendal` follows newer opendal
//! and object_store releases than the DataFusion 53 line uses.

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// One bucket, read only, and only under the warehouse's prefix.
#[derive(Debug, Clone)]
pub(crate) struct ReadOnlyBucket {
    bucket: String,
    /// The warehouse's prefix in the bucket (no leading or trailing `/`; empty: the bucket).
    prefix: String,
    operator: opendal::Operator,
}

impl fmt::Display for ReadOnlyBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadOnlyBucket(s3://{}/{})", self.bucket, self.prefix)
    }
}

impl ReadOnlyBucket {
    /// `operator` is rooted at the bucket.
    pub(crate) fn new(bucket: &str, prefix: &str, operator: opendal::Operator) -> Self {
        Self {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            operator,
        }
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    fn inside(&self, location: &ObjectPath) -> object_store::Result<()> {
        let path = location.as_ref();
        let inside = self.prefix.is_empty()
            || path
                .strip_prefix(&self.prefix)
                .is_some_and(|rest| rest.starts_with('/'));
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
            source: format!("SQL never writes files (`{location}`)").into(),
        }
    }

    async fn meta(&self, location: &ObjectPath) -> object_store::Result<ObjectMeta> {
        let stat = self
            .operator
            .stat(location.as_ref())
            .await
            .map_err(|e| error(location, e))?;
        Ok(object_meta(location.clone(), &stat))
    }
}

fn object_meta(location: ObjectPath, stat: &opendal::Metadata) -> ObjectMeta {
    let last_modified = stat
        .last_modified()
        .and_then(|t| chrono::DateTime::from_timestamp_millis(t.into_inner().as_millisecond()))
        .unwrap_or_default();
    ObjectMeta {
        location,
        last_modified,
        size: stat.content_length(),
        e_tag: stat.etag().map(str::to_string),
        version: None,
    }
}

fn error(location: &ObjectPath, e: opendal::Error) -> object_store::Error {
    match e.kind() {
        opendal::ErrorKind::NotFound => object_store::Error::NotFound {
            path: location.to_string(),
            source: Box::new(e),
        },
        _ => object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        },
    }
}

#[async_trait]
impl ObjectStore for ReadOnlyBucket {
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
        // Data files are immutable: the conditions of a conditional read always hold.
        let meta = self.meta(location).await?;
        let range = match &options.range {
            Some(range) => range
                .as_range(meta.size)
                .map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })?,
            None => 0..meta.size,
        };
        let payload = if options.head {
            futures::stream::empty().boxed()
        } else {
            let bytes = self.read(location, range.clone()).await?;
            futures::stream::once(async move { Ok(bytes) }).boxed()
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes: Attributes::default(),
        })
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inside(location)?;
        futures::future::try_join_all(ranges.iter().map(|r| self.read(location, r.clone()))).await
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
        let Some(prefix) = prefix.cloned() else {
            return futures::stream::empty().boxed();
        };
        if let Err(e) = self.inside(&prefix) {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        let operator = self.operator.clone();
        futures::stream::once(async move {
            let path = format!("{}/", prefix.as_ref());
            let lister = operator
                .lister_with(&path)
                .recursive(true)
                .await
                .map_err(|e| error(&prefix, e))?;
            let entries = lister
                .try_filter(|entry| futures::future::ready(entry.metadata().is_file()))
                .map_ok(|entry| object_meta(ObjectPath::from(entry.path()), entry.metadata()))
                .map_err(move |e| error(&prefix, e));
            Ok::<_, object_store::Error>(entries)
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        let Some(prefix) = prefix else {
            return Ok(ListResult {
                common_prefixes: Vec::new(),
                objects: Vec::new(),
            });
        };
        self.inside(prefix)?;
        let entries = self
            .operator
            .list(&format!("{}/", prefix.as_ref()))
            .await
            .map_err(|e| error(prefix, e))?;
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
        };
        for entry in entries {
            let path = ObjectPath::from(entry.path().trim_end_matches('/'));
            if entry.metadata().is_dir() {
                if path != *prefix {
                    result.common_prefixes.push(path);
                }
            } else {
                result.objects.push(object_meta(path, entry.metadata()));
            }
        }
        Ok(result)
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

impl ReadOnlyBucket {
    async fn read(&self, location: &ObjectPath, range: Range<u64>) -> object_store::Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.operator
            .read_with(location.as_ref())
            .range(range)
            .await
            .map(|buffer| buffer.to_bytes())
            .map_err(|e| error(location, e))
    }
}
