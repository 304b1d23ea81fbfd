//! Objects landing in buckets, as events for the functions that wait on them; putting an
//! object into a local bucket.

use basin_catalog::NewEvent;
use basin_core::{Error, Result};
use basin_runtime::Trigger;
use std::path::Path;

use super::Triggers;
use crate::deployed::DeployedFunction;
use crate::queue::event_id;

/// An object as its event describes it.
pub(crate) struct ObjectMeta<'a> {
    /// The bucket's name in Basin (what `@basin.on_object(bucket=)` says).
    pub bucket: &'a str,
    /// The key inside the bucket.
    pub key: &'a str,
    pub size: u64,
    pub etag: &'a str,
    /// When it was written (RFC 3339).
    pub time: String,
    /// `local`, `s3-poll` or `s3-webhook`.
    pub source: &'a str,
}

/// The events an object makes: one per deployed function whose bucket, prefix and suffix
/// match. The id hashes the function, bucket, key and etag, so an object seen twice (by the
/// start-up scan and the watcher, by a poll and a webhook) is queued once.
pub(crate) fn object_events(functions: &[DeployedFunction], object: &ObjectMeta) -> Vec<NewEvent> {
    functions
        .iter()
        .filter(|f| match f.trigger() {
            Some(Trigger::Object {
                bucket,
                prefix,
                suffix,
            }) => {
                bucket == object.bucket
                    && object.key.starts_with(prefix.as_str())
                    && object.key.ends_with(suffix.as_str())
            }
            _ => false,
        })
        .map(|f| NewEvent {
            id: event_id(&[&f.name, object.bucket, object.key, object.etag]),
            function: f.name.clone(),
            payload: serde_json::json!({
                "type": "object_created",
                "bucket": object.bucket,
                "key": object.key,
                "size": object.size,
                "etag": object.etag,
                "time": object.time,
                "source": object.source,
            }),
            max_attempts: f.declaration.max_attempts,
        })
        .collect()
}

impl Triggers<'_> {
    /// Copies `file` into bucket `bucket` as `key`, atomically: it is written under a hidden
    /// name and renamed, so a watcher never sees half a file (an S3 bucket gets one PUT).
    pub async fn put_object(&self, file: &Path, bucket: &str, key: &str) -> Result<u64> {
        let bad_key = key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == ".." || p.starts_with('.'));
        if bad_key {
            return Err(
                Error::invalid(format!("`{key}` is not an object key")).with_hint(
                    "use a relative key like landing/2026/orders.csv (no `..`, no hidden names)",
                ),
            );
        }
        if std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink()) {
            let hint = match std::fs::canonicalize(file) {
                Ok(target) => format!(
                    "put the file it points to: `basin put {} {bucket}/{key}`",
                    target.display()
                ),
                Err(_) => "it points nowhere; put a regular file".to_string(),
            };
            return Err(Error::invalid(format!(
                "{} is a symbolic link; `basin put` copies regular files only",
                file.display()
            ))
            .with_hint(hint));
        }
        if let Some(s3) = self.lake.buckets().s3(bucket) {
            let data = std::fs::read(file)
                .map_err(|e| Error::io_with(format!("cannot read {}", file.display()), e))?;
            let len = data.len() as u64;
            self.lake.buckets().write_s3_object(s3, key, data).await?;
            return Ok(len);
        }
        let folder = self.lake.buckets().folder(bucket);
        if !folder.is_dir() {
            let known = self.lake.buckets().names();
            let hint = match basin_core::suggest(bucket, known.iter().map(String::as_str)) {
                Some(meant) => format!("did you mean `{meant}`?"),
                None if known.is_empty() => {
                    "`basin deploy` creates the buckets its functions watch; none exists yet"
                        .to_string()
                }
                None => format!(
                    "buckets: {}; `basin deploy` creates the buckets its functions watch",
                    known.join(", ")
                ),
            };
            return Err(Error::not_found(format!("no bucket `{bucket}`")).with_hint(hint));
        }
        let target = folder.join(key);
        // A watched bucket skips links, so a linked folder would swallow the object unseen.
        if let Some(link) = crate::links::symlink_under(&folder, &target) {
            return Err(Error::invalid(format!(
                "{} is a symbolic link; buckets hold plain files and folders",
                link.display()
            ))
            .with_hint("remove the link from the bucket, or put the object under another key"));
        }
        let parent = target.parent().expect("a key has a parent folder");
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io_with(format!("cannot create {}", parent.display()), e))?;
        let name = target.file_name().expect("checked").to_string_lossy();
        let partial = parent.join(format!(".{name}.part"));
        let bytes = std::fs::copy(file, &partial)
            .map_err(|e| Error::io_with(format!("cannot read {}", file.display()), e))?;
        std::fs::rename(&partial, &target)
            .map_err(|e| Error::io_with(format!("cannot store {}", target.display()), e))?;
        Ok(bytes)
    }
}
