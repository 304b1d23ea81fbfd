//! The warehouse's S3 bucket, read through the opendal operator Basin already has. Written
//! here: `object_store`'s own S3 client would bring a second HTTP and TLS stack, and
//! `object_store_opendal` follows newer opendal and object_store releases than the DataFusion
//! 53 line uses.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{Attributes, GetOptions, GetResult, GetResultPayload, ListResult, ObjectMeta};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::reader::Reader;
use crate::limits::LimitCounters;

/// An S3 bucket through an opendal operator rooted at it.
#[derive(Debug)]
pub(super) struct Bucket {
    pub(super) name: String,
    pub(super) operator: opendal::Operator,
    pub(super) slots: Slots,
}

/// At most `[sql] s3_reads` requests in flight (a semaphore's permits); the ones in flight
/// and the ones that waited are counted for `/metrics`.
#[derive(Debug)]
pub(super) struct Slots {
    permits: Semaphore,
    counters: Arc<LimitCounters>,
}

/// A request's slot: given back, and the request no longer counted in flight, when dropped.
struct Slot<'a> {
    _permit: SemaphorePermit<'a>,
    counters: &'a LimitCounters,
}

impl Slots {
    pub(super) fn new(limit: usize, counters: Arc<LimitCounters>) -> Self {
        Self {
            permits: Semaphore::new(limit.max(1)),
            counters,
        }
    }

    async fn take(&self) -> Slot<'_> {
        let permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                self.counters
                    .s3_reads_waited
                    .fetch_add(1, Ordering::Relaxed);
                // Never closed: the semaphore lives as long as the store.
                self.permits.acquire().await.expect("S3 read slots")
            }
        };
        self.counters
            .s3_reads_in_flight
            .fetch_add(1, Ordering::Relaxed);
        Slot {
            _permit: permit,
            counters: &self.counters,
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.counters
            .s3_reads_in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.name)
    }
}

impl Bucket {
    async fn meta(&self, location: &ObjectPath) -> object_store::Result<ObjectMeta> {
        let _slot = self.slots.take().await;
        let stat = self
            .operator
            .stat(location.as_ref())
            .await
            .map_err(|e| s3_error(location, e))?;
        Ok(object_meta(location.clone(), &stat))
    }

    async fn read(&self, location: &ObjectPath, range: Range<u64>) -> object_store::Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let _slot = self.slots.take().await;
        self.operator
            .read_with(location.as_ref())
            .range(range)
            .await
            .map(|buffer| buffer.to_bytes())
            .map_err(|e| s3_error(location, e))
    }
}

#[async_trait]
impl Reader for Bucket {
    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
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
        futures::future::try_join_all(ranges.iter().map(|r| self.read(location, r.clone()))).await
    }

    fn list(&self, prefix: &ObjectPath) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let operator = self.operator.clone();
        let prefix = prefix.clone();
        futures::stream::once(async move {
            let lister = operator
                .lister_with(&format!("{}/", prefix.as_ref()))
                .recursive(true)
                .await
                .map_err(|e| s3_error(&prefix, e))?;
            let entries = lister
                .try_filter(|entry| futures::future::ready(entry.metadata().is_file()))
                .map_ok(|entry| object_meta(ObjectPath::from(entry.path()), entry.metadata()))
                .map_err(move |e| s3_error(&prefix, e));
            Ok::<_, object_store::Error>(entries)
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: &ObjectPath) -> object_store::Result<ListResult> {
        let entries = self
            .operator
            .list(&format!("{}/", prefix.as_ref()))
            .await
            .map_err(|e| s3_error(prefix, e))?;
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

fn s3_error(location: &ObjectPath, e: opendal::Error) -> object_store::Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn s3_requests_past_the_limit_wait_for_a_slot_and_are_counted() {
        let counters = Arc::new(LimitCounters::default());
        let slots = Slots::new(2, counters.clone());
        let first = slots.take().await;
        let second = slots.take().await;
        assert_eq!(counters.s3_reads_in_flight.load(Ordering::Relaxed), 2);
        assert_eq!(counters.s3_reads_waited.load(Ordering::Relaxed), 0);
        let third = slots.take();
        tokio::pin!(third);
        // No slot is free: the third request waits (and is counted as waiting)...
        assert!(futures::poll!(third.as_mut()).is_pending());
        assert_eq!(counters.s3_reads_waited.load(Ordering::Relaxed), 1);
        assert_eq!(counters.s3_reads_in_flight.load(Ordering::Relaxed), 2);
        // ...until one is given back.
        drop(first);
        let third = third.await;
        assert_eq!(counters.s3_reads_in_flight.load(Ordering::Relaxed), 2);
        drop((second, third));
        assert_eq!(counters.s3_reads_in_flight.load(Ordering::Relaxed), 0);
        // A limit of 0 in basin.toml still lets one request through at a time.
        let one = Slots::new(0, counters.clone());
        let _only = one.take().await;
        assert!(futures::poll!(std::pin::pin!(one.take())).is_pending());
    }
}
