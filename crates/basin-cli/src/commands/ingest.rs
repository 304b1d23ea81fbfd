use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basin_ingest::postgres::{LoadEvent, LoadProgress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::lake::Context;
use crate::output::{ListFormat, print, status};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  basin ingest shop
  basin ingest shop --branch dev --format json
  basin ingest shop --skip-unsupported

Reads every table of the source from one consistent snapshot, in parallel ctid ranges, and
replaces the Basin tables' rows in one commit: all tables or none. Declare sources with
`basin source add` or [sources.NAME] in basin.toml (docs/ingest-postgres.md).")]
pub struct Args {
    /// The source, as declared in basin.toml
    source: String,
    /// A full load, replacing the tables' rows (the only kind until change data capture)
    #[arg(long)]
    full: bool,
    /// Leave out columns whose type Basin cannot store, instead of failing
    #[arg(long)]
    skip_unsupported: bool,
    /// The branch to commit to (default: the source's `branch`, else main)
    #[arg(long, short = 'b')]
    branch: Option<String>,
    /// Connections reading in parallel (default: the source's `readers`, else 2)
    #[arg(long)]
    readers: Option<usize>,
    /// How to print the report: `table` for people, `json` for scripts
    #[arg(long, value_enum, default_value_t = ListFormat::Table, value_name = "FORMAT")]
    format: ListFormat,
}

/// A progress bar per table, on stderr.
fn progress_bars() -> (MultiProgress, LoadProgress) {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{spinner} {prefix:<24} {human_pos:>12} rows [{bar:25}] {rate}, {elapsed}",
    )
    .expect("valid template")
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} rows/s", state.per_sec());
        },
    )
    .progress_chars("=> ");
    let open: Arc<Mutex<HashMap<String, ProgressBar>>> = Arc::default();
    let shown = bars.clone();
    let progress: LoadProgress = Arc::new(move |event| {
        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            LoadEvent::Started {
                table,
                estimated_rows,
            } => {
                let bar = shown.add(ProgressBar::new(estimated_rows.unwrap_or(0).max(1)));
                bar.set_style(style.clone());
                bar.set_prefix(table.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                open.insert(table.to_string(), bar);
            }
            LoadEvent::Rows { table, rows } => {
                if let Some(bar) = open.get(table) {
                    if rows > bar.length().unwrap_or(0) {
                        bar.set_length(rows);
                    }
                    bar.set_position(rows);
                }
            }
            LoadEvent::Finished { table, rows, .. } => {
                if let Some(bar) = open.remove(table) {
                    bar.set_length(rows.max(1));
                    bar.set_position(rows);
                    bar.finish();
                }
            }
        }
    });
    (bars, progress)
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let lake = crate::commands::open(ctx.home("ingest")?).await?;
    let _ = args.full;
    let (bars, progress) = progress_bars();
    let result = lake
        .ingest(
            &args.source,
            args.branch.as_deref(),
            args.skip_unsupported,
            args.readers,
            Some(progress),
        )
        .await;
    let _ = bars.clear();
    let report = result?;
    for skipped in &report.skipped_columns {
        status(format!(
            "warning: left out {} ({}): {}",
            skipped.column, skipped.data_type, skipped.reason
        ));
    }
    if args.format == ListFormat::Table {
        status(format!(
            "Ingested {} rows from `{}` into {} table{} on `{}` (commit {}, {:.1}s, {:.0} rows/s)",
            report.rows,
            report.source,
            report.tables.len(),
            if report.tables.len() == 1 { "" } else { "s" },
            report.branch,
            &report.commit[..12.min(report.commit.len())],
            report.seconds,
            report.rows_per_second
        ));
    }
    let rows = report
        .tables
        .iter()
        .map(|t| {
            vec![
                t.source_table.clone(),
                t.table.clone(),
                t.rows.to_string(),
                basin_catalog::units::format_size(t.bytes),
                format!("{:.2}", t.seconds),
                format!("{:.0}", t.rows_per_second),
            ]
        })
        .collect();
    print(
        args.format,
        &report,
        &[
            "source table",
            "table",
            "rows",
            "bytes",
            "seconds",
            "rows/s",
        ],
        rows,
    )
}
