//! Buckets, where objects land for the functions that wait on them: folders (the embedded
//! default's under `.basin/buckets/NAME`, or a `[buckets.NAME] path`) and buckets in an
//! S3-compatible store (`[buckets.NAME] url = "s3://BUCKET/PREFIX"`). Triggers watch them and
//! put objects into them; the dispatcher reads the object an event is about.

use std::path::PathBuf;

use basin_core::{Error, Result};
use basin_table::S3Settings;
use opendal::Operator;

use crate::Lakehouse;
use crate::config::S3Bucket;

/// Locating buckets and reading and writing objects in S3 ones.
///
/// A handle borrowing the lakehouse: [`Lakehouse::buckets`].
#[derive(Clone, Copy)]
pub struct Buckets<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Locating buckets: see [`Buckets`].
    pub fn buckets(&self) -> Buckets<'_> {
        Buckets { lake: self }
    }
}

impl<'a> Buckets<'a> {
    /// The folder holding every bucket of the embedded default: `.basin/buckets`.
    pub fn default_dir(&self) -> PathBuf {
        self.lake.root().join(crate::BASIN_DIR).join("buckets")
    }

    /// The folder of bucket `name`: `.basin/buckets/NAME`, or the `path` basin.toml gives it.
    pub fn folder(&self, name: &str) -> PathBuf {
        if let Some(folder) = self.lake.settings().bucket_folders.get(name) {
            return folder.clone();
        }
        self.default_dir().join(name)
    }

    /// The S3 bucket named `name`, if basin.toml configures one.
    pub fn s3(&self, name: &str) -> Option<&'a S3Bucket> {
        self.lake.settings().s3_buckets.get(name)
    }

    /// Every bucket there is: the configured ones (folders and S3) and the folders under
    /// `.basin/buckets`, sorted.
    pub fn names(&self) -> Vec<String> {
        let settings = self.lake.settings();
        let mut names: std::collections::BTreeSet<String> = settings
            .bucket_folders
            .keys()
            .chain(settings.s3_buckets.keys())
            .cloned()
            .collect();
        if let Ok(entries) = std::fs::read_dir(self.default_dir()) {
            names.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| !n.starts_with('.')),
            );
        }
        names.into_iter().collect()
    }

    /// An object of an S3 bucket, whole: what the handler's `context.read_bytes()` gets.
    pub(crate) async fn read_s3_object(&self, bucket: &S3Bucket, key: &str) -> Result<Vec<u8>> {
        let op = bucket.operator(&self.lake.settings().s3)?;
        let data = op.read(key).await.map_err(|e| {
            Error::io(format!(
                "cannot read s3://{}/{}{key}: {e}",
                bucket.bucket, bucket.prefix
            ))
        })?;
        Ok(data.to_vec())
    }

    /// Writes an object into an S3 bucket (`basin put`).
    pub(crate) async fn write_s3_object(
        &self,
        bucket: &S3Bucket,
        key: &str,
        data: Vec<u8>,
    ) -> Result<()> {
        let op = bucket.operator(&self.lake.settings().s3)?;
        op.write(key, data).await.map(drop).map_err(|e| {
            Error::io(format!(
                "cannot write s3://{}/{}{key}: {e}",
                bucket.bucket, bucket.prefix
            ))
        })
    }
}

impl S3Bucket {
    /// An operator on the store's bucket, rooted at the prefix.
    pub(crate) fn operator(&self, s3: &S3Settings) -> Result<Operator> {
        s3.operator(&self.bucket, &self.prefix)
    }
}
