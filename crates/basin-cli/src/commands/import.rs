use std::sync::Arc;
use std::time::Duration;

use basin_ingest::{CsvOptions, Format, ImportRequest, Mode};
use indicatif::{ProgressBar, ProgressStyle};

use crate::lake::Context;
use crate::output::{ListFormat, done};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  basin import orders.csv --table sales.orders
  basin import 'landing/*.csv' --table sales.orders --branch dev
  basin import events/ --table app.events --input-format json --partition-by 'day(ts)'
  basin import fixed.parquet --table sales.orders --mode replace
  basin import s3://bucket/raw/trips.csv --table rides.trips

Types are inferred from the first rows (exact decimals, dates, timestamps) or taken from an
existing table. A bad row fails the import with its file, line and column; nothing is committed.")]
pub struct Args {
    /// Files, folders, globs ('data/*.csv') or s3:// URLs
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<String>,
    /// The table to import into, as NAMESPACE.TABLE (created if missing)
    #[arg(long, short = 't', value_name = "NS.TABLE")]
    table: String,
    /// The branch to commit to (default: the current branch)
    #[arg(long, short = 'b')]
    branch: Option<String>,
    /// `append` adds rows; `replace` swaps all rows for the imported ones
    #[arg(long, value_enum, default_value_t = ModeArg::Append)]
    mode: ModeArg,
    /// Partition a new table: COL, day(COL), month(COL), year(COL), hour(COL), bucket(N, COL), truncate(W, COL)
    #[arg(long, value_name = "TERM", value_delimiter = ';')]
    partition_by: Vec<String>,
    /// The files' format (default: from the file extension)
    #[arg(long, value_name = "csv|json|parquet|arrow")]
    input_format: Option<String>,
    /// CSV field separator (default: `,`; tab for .tsv, `|` for .tbl)
    #[arg(long, value_name = "CHAR")]
    delimiter: Option<char>,
    /// CSV quote character (default `"`); a doubled quote inside quotes is a literal quote
    #[arg(long, value_name = "CHAR")]
    quote: Option<char>,
    /// CSV files have no header line (columns are named column_1, column_2, ...)
    #[arg(long)]
    no_header: bool,
    /// Add columns the table does not have yet (as nullable columns)
    #[arg(long)]
    allow_new_columns: bool,
    /// How to print the report: `table` for people, `json` for scripts (as every command)
    #[arg(long, value_enum, default_value_t = ListFormat::Table, value_name = "FORMAT")]
    format: ListFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Append,
    Replace,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    let branch = args.branch.unwrap_or_else(|| lake.current_branch());
    let mut request = ImportRequest::new(args.sources, &args.table, branch);
    request.mode = match args.mode {
        ModeArg::Append => Mode::Append,
        ModeArg::Replace => Mode::Replace,
    };
    request.format = args
        .input_format
        .as_deref()
        .map(Format::parse)
        .transpose()?;
    request.partition_by = args.partition_by;
    request.allow_new_columns = args.allow_new_columns;
    request.csv = CsvOptions::from_chars(args.delimiter, args.quote, !args.no_header)?;

    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} importing {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec}, {eta} left",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress_bar = bar.clone();
    let progress: basin_ingest::Progress = Arc::new(move |done, total| {
        progress_bar.set_length(total);
        progress_bar.set_position(done);
    });
    let result = lake.import(request, Some(progress)).await;
    bar.finish_and_clear();
    let report = result?;
    for missing in &report.missing_columns {
        crate::output::status(format!(
            "warning: {} has no column `{}`: its rows are null there",
            missing.file, missing.column
        ));
    }
    done(args.format, &report, || {
        format!(
            "Imported {} rows from {} file{} into {} on `{}` ({}commit {}, {:.1}s)",
            report.rows,
            report.files,
            if report.files == 1 { "" } else { "s" },
            report.table,
            report.branch,
            if report.created { "new table, " } else { "" },
            &report.commit[..12],
            report.seconds
        )
    })
}
