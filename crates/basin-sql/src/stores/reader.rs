//! What the warehouse's stores read with: the trait [`super::ReadOnly`] wraps.

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetResult, ListResult, ObjectMeta};

/// What [`super::ReadOnly`] reads with: the local file system or an S3 bucket.
#[async_trait]
pub(super) trait Reader: fmt::Debug + fmt::Display + Send + Sync + 'static {
    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult>;
    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>>;
    fn list(&self, prefix: &ObjectPath) -> BoxStream<'static, object_store::Result<ObjectMeta>>;
    async fn list_with_delimiter(&self, prefix: &ObjectPath) -> object_store::Result<ListResult>;
}
