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
    /// Keep the catalog (branches, commits, the event queue) in a Postgres database that
    /// several nodes share, e.g. postgres://basin@db.internal/basin (the password in
    /// PGPASSWORD or ~/.pgpass). Every node runs the same `basin init --catalog --warehouse`;
    /// the first creates the catalog, the others join it
    #[arg(long, value_name = "URL")]
    catalog: Option<String>,
    /// Also write an example pipeline project (Python and SQL models, an expectation) and
    /// import its data, so `basin run` works at once
    #[arg(long)]
    project: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let existing = args.project && args.dir.join(basin_service::BASIN_DIR).is_dir();
    let lakehouse = if existing {
        Lakehouse::open(Some(&args.dir), &args.dir).await?
    } else {
        let placement = basin_service::Placement {
            warehouse: args.warehouse,
            catalog: args.catalog,
        };
        let lakehouse = Lakehouse::init(&args.dir, &placement).await?;
        let catalog = match &placement.catalog {
            Some(url) => format!(", catalog in {url}"),
            None => String::new(),
        };
        status(format!(
            "Initialized a lakehouse in {} (data in {}{catalog}); you are on branch `main`",
            lakehouse.root().join(basin_service::BASIN_DIR).display(),
            lakehouse.warehouse().location()
        ));
        lakehouse
    };
    if args.project {
        use basin_service::pipeline::scaffold;
        let written = scaffold::write(&args.dir)?;
        let raw = args.dir.join(scaffold::RAW_FILE);
        let request = basin_ingest::ImportRequest::new(
            vec![raw.display().to_string()],
            scaffold::RAW_TABLE,
            lakehouse.current_branch(),
        );
        lakehouse.import(request, None).await?;
        status(format!(
            "Wrote an example project ({} files) and imported {} into {}; now: cd {} && basin run",
            written.len(),
            scaffold::RAW_FILE,
            scaffold::RAW_TABLE,
            args.dir.display()
        ));
    }
    Ok(())
}
