//! `[buckets.NAME]` sections that name a bucket in an S3-compatible store.

use std::time::Duration;

use basin_core::{Error, Result};

/// A `[buckets.NAME]` section.
#[derive(Clone, Debug)]
pub struct S3Bucket {
    pub name: String,
    /// The bucket in the store.
    pub bucket: String,
    /// The folder inside it (no leading `/`, with a trailing one when not empty).
    pub prefix: String,
    pub poll: Duration,
}

impl S3Bucket {
    pub fn parse(name: &str, url: &str, poll_seconds: Option<f64>) -> Result<Self> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            Error::invalid(format!("`{url}` is not an s3:// URL"))
                .with_hint("give url = \"s3://BUCKET/PREFIX\"")
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::invalid(format!("`{url}` names no bucket"))
                .with_hint("give url = \"s3://BUCKET/PREFIX\""));
        }
        let prefix = prefix.trim_matches('/');
        let poll = match poll_seconds {
            Some(s) if s > 0.0 && Duration::try_from_secs_f64(s).is_ok() => {
                Duration::from_secs_f64(s)
            }
            Some(s) => {
                return Err(Error::invalid(format!(
                    "poll_seconds = {s} is not a positive number"
                )));
            }
            None => DEFAULT_POLL,
        };
        Ok(Self {
            name: name.to_string(),
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            poll,
        })
    }
}

/// How often a bucket is listed when its section does not say.
pub(crate) const DEFAULT_POLL: Duration = Duration::from_secs(30);
