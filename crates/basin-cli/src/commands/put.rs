use std::path::{Path, PathBuf};

use crate::lake::open_local;
use crate::output::status;

#[derive(clap::Args)]
#[command(
    after_help = "The object lands whole (written under a hidden name, then renamed; or one PUT
for a bucket in S3), so a function triggered by it never reads half a file.

Example:
  basin put orders-0001.csv landing/2026/11/orders-0001.csv"
)]
pub struct Args {
    /// The local file to upload
    file: PathBuf,
    /// BUCKET/KEY: the bucket (a deployed function's) and the object's key
    #[arg(value_name = "BUCKET/KEY")]
    target: String,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    let Some((bucket, key)) = args.target.split_once('/') else {
        return Err(
            basin_core::Error::invalid(format!("`{}` is not BUCKET/KEY", args.target))
                .with_hint("e.g. basin put orders.csv landing/orders.csv")
                .into(),
        );
    };
    let bytes = lakehouse
        .triggers()
        .put_object(&args.file, bucket, key)
        .await?;
    status(format!(
        "Put {} ({bytes} bytes) into {bucket}/{key}",
        args.file.display()
    ));
    if !lakehouse.is_served() {
        status(
            "note: no `basin serve` of this lakehouse runs on this machine, so the object waits: \
             the functions watching the bucket handle it when `basin serve` starts",
        );
    }
    Ok(())
}
