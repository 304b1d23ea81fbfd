use std::path::PathBuf;

use basin_service::Lakehouse;

use crate::output::status;

#[derive(clap::Args)]
pub struct Args {
    /// The folder to hold the lakehouse (created if missing)
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Keep table data in an S3-compatible store, e.g. s3://bucket/prefix (endpoint and keys
    /// from basin.toml [s3] or BASIN_S3_*)
    #[arg(long, value_name = "URL")]
    warehouse: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let lakehouse = Lakehouse::init(&args.dir, args.warehouse.as_deref()).await?;
    status(format!(
        "Initialized a lakehouse in {} (data in {}); you are on branch `main`",
        lakehouse.root().join(basin_service::BASIN_DIR).display(),
        lakehouse.warehouse().location()
    ));
    Ok(())
}
