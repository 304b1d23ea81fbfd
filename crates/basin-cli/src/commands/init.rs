use std::path::{Path, PathBuf};

use basin_service::Lakehouse;

use crate::output::status;

#[derive(clap::Args)]
pub struct Args {
    /// The folder to hold the lakehouse (created if missing) [default: --home or BASIN_HOME
    /// when set, else the current folder]
    dir: Option<PathBuf>,
    /// Keep table data in an S3-compatible store, e.g. s3://bucket/prefix (endpoint and keys
    /// from basin.toml [s3] or BASIN_S3_*), or in a folder, e.g. /mnt/lake (with --catalog,
    /// one every node mounts at that same path: NFS, EFS, or one machine's disk)
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

/// The folder `basin init` creates the lakehouse in: the one named, else the global
/// `--home` (so `basin --home /data/lh init` makes /data/lh, as every other command would
/// use it, not the current folder), else the current folder.
fn folder(dir: Option<PathBuf>, home: Option<&Path>) -> PathBuf {
    dir.or_else(|| home.map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

pub async fn run(mut args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let dir = folder(args.dir.take(), home);
    std::fs::create_dir_all(&dir)?;
    let existing = args.project && dir.join(basin_service::BASIN_DIR).is_dir();
    let lakehouse = if existing {
        Lakehouse::open(Some(&dir), &dir).await?
    } else {
        let placement = basin_service::Placement {
            warehouse: args.warehouse,
            catalog: args.catalog,
        };
        let lakehouse = Lakehouse::init(&dir, &placement).await?;
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
        let written = scaffold::write(&dir)?;
        let raw = dir.join(scaffold::RAW_FILE);
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
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::folder;

    #[test]
    fn init_makes_the_folder_named_else_home_else_the_current_one() {
        let home = Path::new("/data/lh");
        let named = Some(PathBuf::from("other"));
        assert_eq!(folder(named.clone(), Some(home)), PathBuf::from("other"));
        assert_eq!(folder(None, Some(home)), home);
        assert_eq!(folder(None, None), PathBuf::from("."));
    }
}
