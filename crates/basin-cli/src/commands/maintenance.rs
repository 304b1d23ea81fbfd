use std::path::Path;

use basin_service::MaintenanceRun;

use crate::lake::open_local;
use crate::output::{FormatArg, ListFormat, print, status, time};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run maintenance now: compaction, expiry and gc, as basin serve does on its schedule
    #[command(
        after_help = "On every branch but pipelines' own (run/*, replay/*): compacts each table
with [maintenance] compact_min_files (default 16) small files or more, expires each table's
snapshots by [maintenance] keep_snapshots and keep_last, then runs basin gc (history, unread
files, Basin's leftovers). A step that fails is recorded with its table and branch, and the
others still run. basin serve runs the same on [maintenance] schedule (default \"0 3 * * *\",
nightly at 03:00 UTC; \"off\" turns it off). See docs/maintenance.md.

Examples:
  basin maintenance run --dry-run     # what would be compacted, expired and removed
  basin maintenance run --format json"
    )]
    Run {
        /// Report what would be done; change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        format: FormatArg,
    },
    /// List maintenance runs, newest first: when, what they did, what failed
    Ls {
        /// How many runs to show
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        format: FormatArg,
    },
}

pub async fn run(cmd: Command, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    match cmd {
        Command::Run { dry_run, format } => {
            let run = lakehouse.maintenance().run("manual", dry_run).await?;
            print(format.format, &run, HEADER, vec![row(&run)])?;
            if format.format == ListFormat::Table {
                for error in &run.errors {
                    status(format!("failed: {error}"));
                }
                status(format!(
                    "{} maintenance run {} in {:.1}s{}",
                    if run.dry_run { "Dry" } else { "Finished" },
                    run.id,
                    run.seconds,
                    if run.errors.is_empty() {
                        String::new()
                    } else {
                        format!("; {} step(s) failed", run.errors.len())
                    }
                ));
            }
            if run.errors.is_empty() {
                Ok(())
            } else {
                Err(basin_core::Error::invalid(format!(
                    "maintenance run {}: {} step(s) failed",
                    run.id,
                    run.errors.len()
                ))
                .with_hint("each failure names its table and branch above; fix it and run `basin maintenance run` again")
                .into())
            }
        }
        Command::Ls { limit, format } => {
            let runs = lakehouse.maintenance().runs(limit).await?;
            print(format.format, &runs, HEADER, runs.iter().map(row).collect())
        }
    }
}

const HEADER: &[&str] = &[
    "started",
    "trigger",
    "status",
    "seconds",
    "compacted files",
    "expired snapshots",
    "history commits removed",
    "files removed",
    "MiB removed",
];

fn row(run: &MaintenanceRun) -> Vec<String> {
    let gc = run.gc.as_ref();
    vec![
        time(run.started_at_ms),
        if run.dry_run {
            format!("{} (dry run)", run.trigger)
        } else {
            run.trigger.clone()
        },
        run.status.clone(),
        format!("{:.1}", run.seconds),
        run.files_compacted().to_string(),
        run.snapshots_expired().to_string(),
        gc.map_or(0, |g| g.history_commits_removed).to_string(),
        gc.map_or(0, |g| g.files_removed).to_string(),
        format!(
            "{:.1}",
            gc.map_or(0, |g| g.bytes_removed) as f64 / (1 << 20) as f64
        ),
    ]
}
