use std::path::Path;

use basin_service::maintenance::gc::GcOptions;

use crate::lake::open_local;
use crate::output::{FormatArg, ListFormat, print, status};

#[derive(clap::Args)]
#[command(
    after_help = "First removes from the catalog's history the commits older than basin.toml's
[maintenance] keep_history (default 30 days) that no branch or tag needs: every ref's head and
its ancestors younger than that stay, tags forever (basin log says where history was cut).

Then deletes the warehouse's table files that no remaining commit reads: what imports and runs
that failed or were killed left behind, and what only removed history or expired snapshots
read (see basin table expire). Every file any branch, tag or retained commit reads is kept,
and so is every file younger than the grace period (a write in flight has written files it
has not committed yet). Only table files (.parquet, .avro, .metadata.json, .puffin, .orc) are
ever deleted.

Then Basin's own leftovers, as long as basin.toml's [maintenance] keeps them: run cache
entries unused for 30 days, the branches of failed and dry runs finished 7 days ago, the
records of runs finished 90 days ago (once their branch is gone), events that succeeded 30
days ago (an object event keeps a row without its logs: it stops the object from being
delivered twice), and upload folders a day old. See docs/maintenance.md.

Examples:
  basin gc --dry-run          # what would go, and how much space it frees
  basin gc
  basin gc --grace 6h --format json"
)]
pub struct Args {
    /// Report what would be deleted; delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Keep files younger than this (at least 1m): longer than any write takes
    /// [default: `[maintenance] gc_grace`, 1h]
    #[arg(long, value_name = "DURATION")]
    grace: Option<String>,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    let grace = match &args.grace {
        Some(grace) => basin_core::units::parse_duration(grace)
            .map_err(|e| e.with_hint("write e.g. --grace 30m, 1h, 2d"))?,
        None => lakehouse.settings().maintenance.gc_grace,
    };
    let report = lakehouse
        .maintenance()
        .gc(&GcOptions {
            dry_run: args.dry_run,
            grace,
        })
        .await?;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
    let rows = vec![
        vec![
            "in the warehouse".into(),
            report.files_found.to_string(),
            mib(report.bytes_found),
        ],
        vec![
            "read by a commit (kept)".into(),
            report.files_reachable.to_string(),
            mib(report.bytes_reachable),
        ],
        vec![
            "younger than the grace period (kept)".into(),
            report.files_too_young.to_string(),
            mib(report.bytes_too_young),
        ],
        vec![
            if report.dry_run {
                "read by nothing (would be removed)"
            } else {
                "read by nothing (removed)"
            }
            .into(),
            report.files_removed.to_string(),
            mib(report.bytes_removed),
        ],
    ];
    print(
        args.format.format,
        &report,
        &["files", "count", "size"],
        rows,
    )?;
    if args.format.format == ListFormat::Table {
        status(format!(
            "{} {} files ({}) in {:.1}s; {} table metadata files marked",
            if report.dry_run {
                "Dry run: would remove"
            } else {
                "Removed"
            },
            report.files_removed,
            mib(report.bytes_removed),
            report.seconds,
            report.metadata_files
        ));
        let verb = if report.dry_run {
            "would remove"
        } else {
            "removed"
        };
        match report.keep_history_seconds {
            Some(keep) => status(format!(
                "History ([maintenance] keep_history = {}): {verb} {} commits{}",
                basin_core::units::format_duration(std::time::Duration::from_secs(keep)),
                report.history_commits_removed,
                match report.history_cut_at.len() {
                    0 => String::new(),
                    n => format!(", cut in {n} place(s)"),
                }
            )),
            None => status("History: kept forever ([maintenance] keep_history = \"off\")"),
        }
        let branches = if report.run_branches_removed.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.run_branches_removed.join(", "))
        };
        status(format!(
            "Basin's leftovers ([maintenance]): {verb} {} run cache entries ({}), {} upload \
             folders, {} run branches{branches}, {} run records, {} succeeded events (and \
             the logs of {} more)",
            report.cache_entries_removed,
            mib(report.cache_bytes_removed),
            report.uploads_removed,
            report.run_branches_removed.len(),
            report.runs_removed,
            report.events_removed,
            report.events_slimmed,
        ));
    }
    Ok(())
}
