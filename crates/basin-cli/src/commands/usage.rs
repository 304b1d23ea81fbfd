use basin_core::Error;
use basin_core::units::format_size as bytes;
use basin_service::UsageBy;
use clap::ValueEnum;

use crate::lake::Context;
use crate::output::{FormatArg, print, status};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum By {
    Function,
    Day,
}

#[derive(clap::Args)]
#[command(
    after_help = "Functions: GB-seconds are the memory a function was given times how long it ran,
as AWS Lambda bills them, plus a price per request. Queries (from `basin query`, the HTTP API
and Postgres clients, shown as `sql (cli)`, `sql (http)`, `sql (postgres)`): the bytes they
scanned, as Athena bills them (by the MB, 10 MB at least; failed queries are free). The
prices are AWS's list prices unless basin.toml sets others:

  [pricing]
  gb_second = 0.0000166667
  per_million_requests = 0.20
  per_tb_scanned = 5.0

Examples:
  basin usage                          # every invocation, by function
  basin usage --since 2026-11-01 --by day
  basin usage --format json"
)]
pub struct Args {
    /// Only invocations started on or after this day (YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Group by function or by day
    #[arg(long, value_enum, default_value_t = By::Function)]
    by: By,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    let since_ms = match &args.since {
        None => 0,
        Some(day) => chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .map_err(|_| {
                Error::invalid(format!("`{day}` is not a date")).with_hint("write it as YYYY-MM-DD")
            })?
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis(),
    };
    let by = match args.by {
        By::Function => UsageBy::Function,
        By::Day => UsageBy::Day,
    };
    let rows = lake.usage(since_ms, by).await?.rows;
    let table = rows
        .iter()
        .map(|u| {
            vec![
                u.key.clone(),
                u.invocations.to_string(),
                u.errors.to_string(),
                u.abandoned.to_string(),
                format!("{:.3}", u.duration_seconds),
                format!("{:.3}", u.cpu_seconds),
                format!("{:.3}", u.gb_seconds),
                bytes(u.bytes_scanned),
                format!("${:.6}", u.cost_usd),
            ]
        })
        .collect();
    print(
        args.format.format,
        &rows,
        &[
            by.as_str(),
            "invocations",
            "errors",
            "abandoned",
            "seconds",
            "cpu seconds",
            "GB-seconds",
            "scanned",
            "cost",
        ],
        table,
    )?;
    if rows.is_empty() {
        status(
            "nothing metered yet: run a function with `basin invoke FILE.py:FUNCTION`, or a query",
        );
    }
    Ok(())
}
