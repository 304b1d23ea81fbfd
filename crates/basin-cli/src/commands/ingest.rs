use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basin_ingest::postgres::{LoadEvent, LoadProgress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use basin_ingest::postgres::cdc::{FollowEvent, FollowProgress};
use basin_service::config::SourceMode;
use basin_service::sources::cdc::FollowOptions;

use crate::lake::Context;
use crate::output::{ListFormat, print, status};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  basin ingest shop
  basin ingest shop --branch dev --format json
  basin ingest shop --skip-unsupported
  basin ingest shop --follow              # change data capture until Ctrl-C

A snapshot source (mode = \"snapshot\") is read from one consistent snapshot, in parallel
ctid ranges, and the Basin tables' rows are replaced in one commit: all tables or none.

A change-data-capture source (mode = \"cdc\", or any source with --follow) is loaded the first
time from a replication slot's exported snapshot; then the slot's changes are applied in
batches of whole source transactions, each batch one commit, exactly once. Without --follow
it stops once caught up with the server; with --follow it streams until Ctrl-C or SIGTERM,
which stop after the current batch commits. Each table NS.T also gets NS.T_changelog.

For a MySQL or MariaDB source the changes come from the binary log, read as a replica reads
it from the position the tables hold (docs/ingest-mysql.md says what the server needs).

Declare sources with `basin source add` or [sources.NAME] in basin.toml
(docs/ingest-postgres.md says what Postgres needs for CDC).")]
pub struct Args {
    /// The source, as declared in basin.toml
    source: String,
    /// A full load, replacing the tables' rows; for a CDC source, start over with a new slot
    #[arg(long)]
    full: bool,
    /// Stream changes (change data capture) until Ctrl-C, after the full load if one is due
    #[arg(long)]
    follow: bool,
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
    let lake = crate::lake::open_local(ctx.home("ingest")?).await?;
    let source = lake.sources().get(&args.source)?;
    if args.follow || source.mode == SourceMode::Cdc {
        return follow(args, &lake).await;
    }
    let (bars, progress) = progress_bars();
    let result = lake
        .sources()
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
                basin_core::units::format_size(t.bytes),
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

/// Change data capture: the full load if one is due, then batches until caught up (or, with
/// `--follow`, until Ctrl-C / SIGTERM, which let the batch in progress commit).
async fn follow(args: Args, lake: &basin_service::Lakehouse) -> anyhow::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        status("stopping after the current batch commits");
        let _ = stop.send(true);
    });
    let format = args.format;
    let (bars, load_progress) = progress_bars();
    let shown = bars.clone();
    let progress: FollowProgress = Arc::new(move |event| match event {
        FollowEvent::Loaded(report) => {
            let _ = shown.clear();
            status(format!(
                "Loaded {} rows from `{}` into {} table{} on `{}` at {} (commit {}, {:.1}s)",
                report.rows,
                report.source,
                report.tables.len(),
                if report.tables.len() == 1 { "" } else { "s" },
                report.branch,
                position(report.lsn.as_deref()),
                &report.commit[..12.min(report.commit.len())],
                report.seconds
            ));
        }
        FollowEvent::Batch(batch) => match format {
            ListFormat::Json => {
                if let Ok(line) = serde_json::to_string(batch) {
                    println!("{line}");
                }
            }
            ListFormat::Table => status(format!(
                "Committed {} transaction{} ({} changes, {} table{}) up to {} in {:.2}s, {:.2}s after the source (commit {})",
                batch.transactions,
                if batch.transactions == 1 { "" } else { "s" },
                batch.changes,
                batch.tables,
                if batch.tables == 1 { "" } else { "s" },
                position(Some(&batch.lsn)),
                batch.seconds,
                batch.lag_seconds,
                &batch.commit[..12.min(batch.commit.len())]
            )),
        },
        FollowEvent::Lag { .. } => {}
    });
    let options = FollowOptions {
        branch: args.branch.clone(),
        follow: args.follow,
        full: args.full,
        skip_unsupported: args.skip_unsupported,
        readers: args.readers,
    };
    let result = lake
        .sources()
        .follow(
            &args.source,
            options,
            stopped,
            Some(load_progress),
            Some(progress),
        )
        .await;
    signals.abort();
    let _ = bars.clear();
    let report = result?;
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string(&report)?),
        ListFormat::Table => status(format!(
            "`{}`: {} batch{}, {} transactions, {} changes applied; {} already applied skipped; tables at {}",
            report.source,
            report.batches,
            if report.batches == 1 { "" } else { "es" },
            report.transactions,
            report.changes,
            report.skipped_transactions,
            position(report.lsn.as_deref())
        )),
    }
    Ok(())
}

/// A source's position for people: Postgres's `lsn 0/16B3748`, MySQL's `position
/// mysql-bin.000003:1234` (or its GTID set after a full load).
fn position(at: Option<&str>) -> String {
    match at {
        Some(at) if at.contains('/') => format!("lsn {at}"),
        Some(at) => format!("position {at}"),
        None => "an unknown position".to_string(),
    }
}
