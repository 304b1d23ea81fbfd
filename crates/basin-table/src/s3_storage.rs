//! How to reach an S3-compatible store ([`S3Settings`]), and iceberg's file IO for S3
//! warehouses over Basin's own opendal operator.
//!
//! Written here rather than taken from `iceberg-storage-opendal` for one reason: that crate
//! turns on opendal's default features, and with them reqwest's aws-lc-rs TLS stack, a second
//! crypto library beside the ring that rustls and parquet already build (about two minutes of
//! a cold build on two cores, issue #18). The work itself is opendal's: this file only maps
//! `s3://bucket/key` to an operator per bucket and opendal's calls to iceberg's traits.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, Once};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage,
    StorageConfig, StorageFactory,
};
use iceberg::{ErrorKind, Result};
use opendal::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};
use serde::{Deserialize, Serialize};

/// How to reach an S3-compatible store. Filled from `basin.toml` and `BASIN_S3_*`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Path-style URLs (`http://host/bucket/key`), which MinIO and most local servers need.
    pub path_style: bool,
}

impl S3Settings {
    /// The region requests are signed for: the one set, else `us-east-1`, which S3-compatible
    /// stores take.
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or("us-east-1")
    }

    /// An opendal operator on `bucket`, rooted at `prefix`, with these settings (listing and
    /// deleting, which FileIO does not do).
    pub fn operator(&self, bucket: &str, prefix: &str) -> crate::Result<opendal::Operator> {
        install_crypto_provider();
        let mut builder = opendal::services::S3::default()
            .bucket(bucket)
            .root(&format!("/{}", prefix.trim_matches('/')))
            .region(self.region())
            // Only what Basin was told: never ~/.aws or the EC2 metadata service.
            .disable_config_load()
            .disable_ec2_metadata();
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint(endpoint);
        }
        if let Some(key) = &self.access_key_id {
            builder = builder.access_key_id(key);
        }
        if let Some(secret) = &self.secret_access_key {
            builder = builder.secret_access_key(secret);
        }
        if let Some(token) = &self.session_token {
            builder = builder.session_token(token);
        }
        if !self.path_style {
            builder = builder.enable_virtual_host_style();
        }
        // Each attempt has its own timeout, and a failed one is tried again (the timeout inside
        // the retry, or a hung request is never retried).
        opendal::Operator::new(builder)
            .map(|b| {
                b.finish()
                    .layer(TimeoutLayer::new())
                    .layer(RetryLayer::new())
            })
            .map_err(|e| {
                crate::Error::io(format!("cannot reach s3://{bucket}/{prefix}")).with_source(e)
            })
    }

    /// A FileIO that speaks S3 with these settings.
    pub fn file_io(&self) -> FileIO {
        FileIOBuilder::new(Arc::new(S3StorageFactory {
            settings: self.clone(),
        }))
        .build()
    }
}

/// Makes ring the process's TLS crypto provider, once, before any HTTP client is built (the
/// only provider Basin builds; reqwest panics without one).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first: that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Builds [`S3Storage`] for a FileIO; the settings are Basin's, not FileIO properties.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct S3StorageFactory {
    pub settings: S3Settings,
}

#[typetag::serde]
impl StorageFactory for S3StorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(S3Storage {
            settings: self.settings.clone(),
            operators: Arc::default(),
        }))
    }
}

/// Reads and writes `s3://bucket/key` paths, with one operator per bucket.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct S3Storage {
    settings: S3Settings,
    #[serde(skip)]
    operators: Arc<Mutex<HashMap<String, Operator>>>,
}

impl S3Storage {
    /// The bucket's operator (rooted at the bucket) and the key within it.
    fn resolve<'a>(&self, path: &'a str) -> Result<(Operator, &'a str)> {
        let (bucket, key) = path
            .strip_prefix("s3://")
            .or_else(|| path.strip_prefix("s3a://"))
            .and_then(|rest| rest.split_once('/'))
            .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
            .ok_or_else(|| {
                iceberg::Error::new(
                    ErrorKind::DataInvalid,
                    format!("`{path}` is not an s3://BUCKET/KEY path"),
                )
            })?;
        let mut operators = self.operators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(op) = operators.get(bucket) {
            return Ok((op.clone(), key));
        }
        let op = self
            .settings
            .operator(bucket, "")
            .map_err(|e| iceberg::Error::new(ErrorKind::Unexpected, e.to_string()))?;
        operators.insert(bucket.to_string(), op.clone());
        Ok((op, key))
    }
}

fn from_opendal(path: &str, e: opendal::Error) -> iceberg::Error {
    let kind = match e.kind() {
        opendal::ErrorKind::NotFound => ErrorKind::DataInvalid,
        _ => ErrorKind::Unexpected,
    };
    iceberg::Error::new(kind, format!("{path}: {e}")).with_source(e)
}

#[async_trait]
#[typetag::serde]
impl Storage for S3Storage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (op, key) = self.resolve(path)?;
        op.exists(key).await.map_err(|e| from_opendal(path, e))
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (op, key) = self.resolve(path)?;
        let meta = op.stat(key).await.map_err(|e| from_opendal(path, e))?;
        Ok(FileMetadata {
            size: meta.content_length(),
        })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (op, key) = self.resolve(path)?;
        let buffer = op.read(key).await.map_err(|e| from_opendal(path, e))?;
        Ok(buffer.to_bytes())
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let (op, key) = self.resolve(path)?;
        let reader = op.reader(key).await.map_err(|e| from_opendal(path, e))?;
        Ok(Box::new(S3Read {
            path: path.to_string(),
            reader,
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (op, key) = self.resolve(path)?;
        op.write(key, bs).await.map_err(|e| from_opendal(path, e))?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let (op, key) = self.resolve(path)?;
        let writer = op.writer(key).await.map_err(|e| from_opendal(path, e))?;
        Ok(Box::new(S3Write {
            path: path.to_string(),
            writer,
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (op, key) = self.resolve(path)?;
        op.delete(key).await.map_err(|e| from_opendal(path, e))
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let (op, key) = self.resolve(path)?;
        let key = format!("{}/", key.trim_end_matches('/'));
        op.delete_with(&key)
            .recursive(true)
            .await
            .map_err(|e| from_opendal(path, e))
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

struct S3Read {
    path: String,
    reader: opendal::Reader,
}

#[async_trait]
impl FileRead for S3Read {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        let buffer = self
            .reader
            .read(range)
            .await
            .map_err(|e| from_opendal(&self.path, e))?;
        Ok(buffer.to_bytes())
    }
}

struct S3Write {
    path: String,
    writer: opendal::Writer,
}

#[async_trait]
impl FileWrite for S3Write {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        self.writer
            .write(bs)
            .await
            .map_err(|e| from_opendal(&self.path, e))
    }

    async fn close(&mut self) -> Result<()> {
        self.writer
            .close()
            .await
            .map(|_| ())
            .map_err(|e| from_opendal(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> S3Storage {
        S3Storage {
            settings: S3Settings {
                endpoint: Some("http://127.0.0.1:1".into()),
                path_style: true,
                ..S3Settings::default()
            },
            operators: Arc::default(),
        }
    }

    #[test]
    fn paths_name_a_bucket_and_a_key() {
        let s = storage();
        let (_, key) = s.resolve("s3://lake/wh/t/data/a.parquet").unwrap();
        assert_eq!(key, "wh/t/data/a.parquet");
        for bad in [
            "s3://lake",
            "s3://lake/",
            "s3:///key",
            "/tmp/a.parquet",
            "gs://b/k",
        ] {
            let e = s.resolve(bad).unwrap_err();
            assert!(e.to_string().contains("s3://BUCKET/KEY"), "{bad}: {e}");
        }
        // One operator per bucket, reused.
        s.resolve("s3://other/k").unwrap();
        s.resolve("s3://lake/k2").unwrap();
        assert_eq!(s.operators.lock().unwrap().len(), 2);
    }
}
