//! Buckets in an S3-compatible store: `[buckets.NAME] url = "s3://BUCKET/PREFIX"` in
//! basin.toml, reached with the `[s3]` section's endpoint and keys. Two sources feed the
//! queue: a poller that lists the bucket (ListObjectsV2, through opendal) every
//! `poll_seconds`, keeping a watermark of the newest modification time it saw in the
//! catalog; and `POST /api/v1/webhooks/s3`, which takes the S3 / MinIO event-notification
//! JSON. Both make the same event id for the same object version (function, bucket, key,
//! ETag), so an object both sources report is queued once.

use crate::config::S3Bucket;

use basin_catalog::NewEvent;
use basin_core::{Error, Result};
use basin_runtime::Trigger;
use tokio::sync::watch;

use super::ObjectMeta;
use super::Triggers;
use crate::Lakehouse;
use crate::dispatch::Dispatcher;

/// Objects this much older than the watermark are still looked at: an upload that started
/// before the last listing can show up in the next with an older modification time.
const WATERMARK_SLACK_MS: i64 = 5 * 60 * 1000;

/// The ETag without the quotes S3 puts around it in listings (notifications leave them out).
fn bare(etag: &str) -> &str {
    etag.trim_matches('"')
}

impl Triggers<'_> {
    /// Events for the objects an S3 / MinIO event notification reports as created; objects
    /// outside every configured bucket are left out.
    pub async fn notification_events(&self, body: &serde_json::Value) -> Result<Vec<NewEvent>> {
        let records = body
            .get("Records")
            .and_then(|r| r.as_array())
            .ok_or_else(|| {
                Error::invalid("the notification has no `Records`").with_hint(
                    "send S3 or MinIO event-notification JSON: {\"Records\": [{\"eventName\": \
                     \"ObjectCreated:Put\", \"s3\": {\"bucket\": {\"name\": ...}, \"object\": \
                     {\"key\": ...}}}]}",
                )
            })?;
        let functions = self.lake.deployed().list().await?;
        let mut events = Vec::new();
        for record in records {
            let created = record
                .get("eventName")
                .and_then(|n| n.as_str())
                .is_some_and(|n| {
                    n.starts_with("ObjectCreated:") || n.starts_with("s3:ObjectCreated:")
                });
            let s3 = &record["s3"];
            let (Some(store_bucket), Some(encoded)) =
                (s3["bucket"]["name"].as_str(), s3["object"]["key"].as_str())
            else {
                continue;
            };
            if !created {
                continue;
            }
            // Keys arrive URL-encoded, with `+` for spaces.
            let full_key = percent_decode(&encoded.replace('+', " "));
            let time = record["eventTime"].as_str().unwrap_or_default().to_string();
            for bucket in self.lake.settings().s3_buckets.values() {
                let Some(key) = full_key.strip_prefix(&bucket.prefix) else {
                    continue;
                };
                if bucket.bucket != store_bucket || key.is_empty() {
                    continue;
                }
                let object = ObjectMeta {
                    bucket: &bucket.name,
                    key,
                    size: s3["object"]["size"].as_u64().unwrap_or(0),
                    etag: bare(s3["object"]["eTag"].as_str().unwrap_or_default()),
                    time: time.clone(),
                    source: "s3-webhook",
                };
                events.extend(super::object_events(&functions, &object));
            }
        }
        Ok(events)
    }
}

/// `%XX` sequences decoded (S3 keys in notifications are URL-encoded).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lists every configured S3 bucket that a deployed function watches, each at its own
/// interval, until `stop` turns true.
pub async fn poll(lakehouse: Lakehouse, dispatcher: Dispatcher, mut stop: watch::Receiver<bool>) {
    let buckets: Vec<S3Bucket> = lakehouse.settings().s3_buckets.values().cloned().collect();
    let mut tasks = tokio::task::JoinSet::new();
    for bucket in buckets {
        let (lakehouse, dispatcher, mut stop) =
            (lakehouse.clone(), dispatcher.clone(), stop.clone());
        tasks.spawn(async move {
            loop {
                // One node lists a bucket at a time: the one holding its lease, renewed at
                // every listing, taken over by another node when it stops.
                let now = chrono::Utc::now().timestamp_millis();
                let until = now + 3 * bucket.poll.as_millis() as i64 + 1_000;
                let store = lakehouse.catalog().store();
                let name = bucket.cursor();
                let lease = store.try_lease(&name, crate::queue::node_name(), now, until);
                let listed = match lease.await {
                    Ok(true) => poll_once(&lakehouse, &bucket).await,
                    Ok(false) => Ok(0),
                    Err(e) => Err(e),
                };
                match listed {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(bucket = bucket.name, events = n, "queued new objects");
                        dispatcher.wake();
                    }
                    Err(e) => tracing::warn!(bucket = bucket.name, "cannot list the bucket: {e}"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(bucket.poll) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
    let _ = stop.changed().await;
    tasks.shutdown().await;
}

/// One listing: queues the objects modified since the watermark (less a slack) that a
/// function wants, then moves the watermark. Returns how many events were new.
pub async fn poll_once(lakehouse: &Lakehouse, bucket: &S3Bucket) -> Result<usize> {
    let functions = lakehouse.deployed().list().await?;
    let watched = functions.iter().any(
        |f| matches!(f.trigger(), Some(Trigger::Object { bucket: b, .. }) if *b == bucket.name),
    );
    if !watched {
        return Ok(0);
    }
    let store = lakehouse.catalog().store();
    let watermark = store.cursor(&bucket.cursor()).await?;
    let op = bucket.operator(&lakehouse.settings().s3)?;
    let entries = op.list_with("").recursive(true).await.map_err(|e| {
        Error::io(format!(
            "cannot list s3://{}/{}: {e}",
            bucket.bucket, bucket.prefix
        ))
    })?;
    let mut newest = watermark.unwrap_or(0);
    let mut events = Vec::new();
    for entry in entries {
        let meta = entry.metadata();
        if !meta.is_file() {
            continue;
        }
        let modified: Option<chrono::DateTime<chrono::Utc>> = meta
            .last_modified()
            .map(|t| std::time::SystemTime::from(t).into());
        let modified_ms = modified.map_or(0, |t| t.timestamp_millis());
        if watermark.is_some_and(|w| modified_ms < w - WATERMARK_SLACK_MS) {
            continue;
        }
        newest = newest.max(modified_ms);
        let object = ObjectMeta {
            bucket: &bucket.name,
            key: entry.path().trim_start_matches('/'),
            size: meta.content_length(),
            etag: bare(meta.etag().unwrap_or_default()),
            time: modified.map(|t| t.to_rfc3339()).unwrap_or_default(),
            source: "s3-poll",
        };
        events.extend(super::object_events(&functions, &object));
    }
    let mut stored = 0;
    for chunk in events.chunks(1000) {
        stored += store.enqueue_events(chunk).await?;
    }
    store.set_cursor(&bucket.cursor(), newest).await?;
    Ok(stored)
}

/// What the poller needs of a bucket beyond its section: its cursor (`lake.buckets()` makes
/// an operator on it).
impl S3Bucket {
    fn cursor(&self) -> String {
        format!("s3:{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::buckets::DEFAULT_POLL;
    use std::time::Duration;

    #[test]
    fn urls_and_keys() {
        let b = S3Bucket::parse("landing", "s3://incoming/orders/", Some(2.0)).unwrap();
        assert_eq!(
            (b.bucket.as_str(), b.prefix.as_str()),
            ("incoming", "orders/")
        );
        assert_eq!(b.poll, Duration::from_secs(2));
        let whole = S3Bucket::parse("all", "s3://incoming", None).unwrap();
        assert_eq!((whole.prefix.as_str(), whole.poll), ("", DEFAULT_POLL));
        assert!(S3Bucket::parse("x", "/srv/landing", None).is_err());
        assert!(S3Bucket::parse("x", "s3://b/p", Some(0.0)).is_err());
        assert_eq!(percent_decode("2026%2F11/a%20b.csv"), "2026/11/a b.csv");
        assert_eq!(bare("\"abc\""), "abc");
    }
}
