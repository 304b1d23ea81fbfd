use std::path::Path;

use crate::output::status;

#[derive(clap::Args)]
#[command(
    after_help = "A worker runs triggered functions (files landing in a bucket, schedules, HTTP calls \
made with ?async=true) for a lakehouse whose catalog is shared: it leases due events from the \
queue in the catalog, runs them in its own confined Python workers and commits their outputs. \
The `basin serve` nodes queue the events; every node claims from the same queue, so each event \
runs once, wherever. A worker killed mid-batch loses nothing: its leases run out (30 s) and \
another node runs those events; a table never gets an event's rows twice.

Examples:
  basin init /var/lib/basin --catalog postgres://basin@db/basin --warehouse s3://lake/prod
  basin worker --home /var/lib/basin
  basin worker --join postgres://basin@db/basin --home /var/lib/basin   # init and work in one step
  basin worker --listen 0.0.0.0:9181        # /healthz for a supervisor, /metrics for Prometheus (reader token)

The catalog's password comes from PGPASSWORD or ~/.pgpass; the bucket's keys from [s3] in
basin.toml or BASIN_S3_*. SIGINT or SIGTERM stops claiming, lets running batches finish (up to
30 s), then stops."
)]
pub struct Args {
    /// Join the lakehouse whose catalog is at this Postgres URL: makes the --home folder (or
    /// the current one) a node of it first, unless it is one already
    #[arg(long, value_name = "URL")]
    join: Option<String>,
    /// With --join: the lakehouse's warehouse, if the catalog does not know it
    #[arg(long, value_name = "URL", requires = "join")]
    warehouse: Option<String>,
    /// Answer GET /healthz (no token) and /metrics (a reader token) on this address (port 0
    /// picks a free one); without it the worker listens on nothing
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<std::net::SocketAddr>,
    /// /metrics without a token (loopback addresses only)
    #[arg(long, requires = "listen")]
    no_auth: bool,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = match &args.join {
        Some(url) => join(url, args.warehouse, home).await?,
        None => crate::lake::open_local(home).await?,
    };
    super::start_logging(&lakehouse)?;
    let line = format!(
        "Working for the lakehouse in {} (catalog {})",
        lakehouse.root().display(),
        lakehouse.catalog_location()
    );
    let options = basin_server::WorkOptions {
        listen: args.listen,
        no_auth: args.no_auth,
    };
    basin_server::work(lakehouse, options, |bound| {
        let http = match bound.http {
            Some(addr) => format!("/healthz and /metrics on http://{addr}"),
            None => "no /healthz or /metrics (pass --listen)".to_string(),
        };
        let sql = match bound.sql_executor {
            Some(addr) => format!("; SQL executor on {addr}"),
            None => String::new(),
        };
        status(format!("{line}; {http}{sql} (Ctrl-C to stop)"))
    })
    .await?;
    Ok(())
}

/// The lakehouse at `home` (or here), made a node of the one whose catalog is at `url` if
/// it is not a lakehouse yet.
async fn join(
    url: &str,
    warehouse: Option<String>,
    home: Option<&Path>,
) -> anyhow::Result<basin_service::Lakehouse> {
    let dir = match home {
        Some(home) => home.to_path_buf(),
        None => std::env::current_dir()?,
    };
    if dir.join(basin_service::BASIN_DIR).is_dir() {
        let lakehouse = crate::lake::open_local(Some(&dir)).await?;
        lakehouse.check_catalog(url)?;
        return Ok(lakehouse);
    }
    std::fs::create_dir_all(&dir)?;
    let placement = basin_service::Placement {
        warehouse,
        catalog: Some(url.to_string()),
    };
    let lakehouse = basin_service::Lakehouse::init(&dir, &placement).await?;
    status(format!(
        "Joined: {} is now a node of the lakehouse (data in {})",
        dir.display(),
        lakehouse.warehouse().location()
    ));
    Ok(lakehouse)
}
