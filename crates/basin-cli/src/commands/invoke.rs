use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use basin_core::Error;
use basin_core::units::format_size as bytes;
use basin_core::units::{parse_duration, parse_size};
use basin_ingest::Mode;
use basin_runtime::{Output, Stream};
use basin_service::InvokeRequest;

use super::env::parse_pin;
use super::query::{QueryFormat, write_batches};
use crate::lake::open_local;
use crate::output::status;

#[derive(clap::Args)]
#[command(
    after_help = "A Python function declares its environment, limits and inputs:

  @basin.python(\"3.11\", pip={\"pandas\": \"2.2.3\"}, timeout=\"5m\", memory=\"2GiB\")
  def top(orders=basin.Model(\"tpch.orders\", columns=[\"o_custkey\"], filter=\"o_totalprice > 1000\")):
      return orders                       # a pyarrow Table, DataFrame, JSON value or None

or takes an event: `def handler(event, context)`. It runs in a fresh process forked from a
warm worker of its environment, in a private folder, with no network (unless internet=True)
and no access to the catalog; inputs arrive as memory-mapped Arrow tables.

Examples:
  basin invoke clean.py:top                           # print the returned table
  basin invoke clean.py:top --ref v1 --format json    # inputs as of tag v1
  basin invoke hooks.py:handler --event '{\"id\": 7}'   # or --event @event.json
  basin invoke clean.py:top --to sales.top --mode replace --branch dev
  basin invoke ./shout --input orders=tpch.orders     # any program that speaks docs/protocol.md"
)]
pub struct Args {
    /// FILE.py:FUNCTION, or an executable program that speaks Basin's protocol
    target: String,
    /// Read inputs at this branch, tag or REF@COMMIT (default: the current branch)
    #[arg(long = "ref", value_name = "REF")]
    at: Option<String>,
    /// The event, as JSON or @FILE
    #[arg(long, value_name = "JSON|@FILE")]
    event: Option<String>,
    /// An input table for parameter NAME (adds to or replaces the declared ones)
    #[arg(long = "input", value_name = "NAME=NS.TABLE")]
    inputs: Vec<String>,
    /// Store the returned table in NS.TABLE (created if missing), in one commit
    #[arg(long, value_name = "NS.TABLE")]
    to: Option<String>,
    /// With --to: append rows, or replace the table's rows
    #[arg(long, value_enum, default_value_t = ModeArg::Append, requires = "to")]
    mode: ModeArg,
    /// With --to: the branch to commit on (default: the current branch)
    #[arg(long, requires = "to")]
    branch: Option<String>,
    /// Python version for a program's environment (Python functions declare theirs)
    #[arg(long, value_name = "VERSION")]
    python: Option<String>,
    /// A pinned package for a program's environment, NAME==VERSION (repeat for more)
    #[arg(long = "pip", value_name = "NAME==VERSION")]
    pip: Vec<String>,
    /// Wall-clock limit, e.g. 30s, 5m (overrides the declaration; default 15m)
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Memory limit, e.g. 512MiB, 2GiB (overrides the declaration; default 2GiB)
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Allow network access (off by default)
    #[arg(long)]
    internet: bool,
    /// How to print a returned table (`parquet` needs -o); JSON values print as JSON
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    format: QueryFormat,
    /// Write a returned table to FILE instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModeArg {
    Append,
    Replace,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    let event = match args.event.as_deref() {
        None => serde_json::Value::Null,
        Some(text) => parse_event(text)?,
    };
    let inputs = args
        .inputs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(n, t)| (n.trim().to_string(), t.trim().to_string()))
                .ok_or_else(|| {
                    Error::invalid(format!("`--input {pair}` is not NAME=NS.TABLE"))
                        .with_hint("e.g. --input orders=tpch.orders")
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = InvokeRequest {
        target: args.target,
        at: args.at,
        event,
        inputs,
        to: args.to,
        mode: match args.mode {
            ModeArg::Append => Mode::Append,
            ModeArg::Replace => Mode::Replace,
        },
        branch: args.branch,
        python: args.python,
        pip: args
            .pip
            .iter()
            .map(|p| parse_pin(p))
            .collect::<Result<_, _>>()?,
        timeout: args.timeout.as_deref().map(parse_duration).transpose()?,
        memory_bytes: args.memory.as_deref().map(parse_size).transpose()?,
        internet: args.internet,
    };
    // The function's own output streams to the terminal (stderr: stdout is for its result).
    status(lakehouse.runtime()?.walls().summary());
    let sink = Arc::new(|_: Stream, line: &str| eprintln!("{line}"));
    let notify = Arc::new(|line: &str| status(line));
    let functions = lakehouse.functions();
    let report = tokio::select! {
        report = functions.invoke(request, sink, notify) => report?,
        _ = tokio::signal::ctrl_c() => {
            lakehouse.runtime()?.kill_all().await;
            return Err(Error::invalid("interrupted: the function was stopped").into());
        }
    };
    if !report.unconfined.is_empty() {
        status(format!(
            "note: this machine could not confine the function with: {}",
            report.unconfined.join("; ")
        ));
    }
    let r = &report.record;
    match &report.output {
        Output::Table { schema, batches } => {
            if report.stored.is_none() || args.output.is_some() {
                let mut out: Box<dyn Write + Send> = match &args.output {
                    Some(path) => Box::new(File::create(path)?),
                    None => Box::new(std::io::stdout()),
                };
                write_batches(&mut out, args.format, schema, batches)?;
                out.flush()?;
            }
        }
        Output::Json(value) => println!("{}", serde_json::to_string_pretty(value)?),
        Output::None | Output::Batch(_) => {}
    }
    status(format!(
        "{}: {:.0} ms (cpu {:.0} ms, peak memory {}), {} rows in, {} rows out",
        r.function,
        r.duration_ms,
        r.cpu_ms,
        bytes(r.peak_memory_bytes),
        r.rows_in,
        r.rows_out
    ));
    if let Some(stored) = &report.stored {
        status(format!(
            "Stored {} rows in {} on `{}` ({}, commit {})",
            stored.rows,
            stored.table,
            stored.branch,
            if stored.created {
                "created"
            } else {
                "existing table"
            },
            &stored.commit[..8.min(stored.commit.len())]
        ));
    }
    Ok(())
}

fn parse_event(text: &str) -> Result<serde_json::Value, Error> {
    let (what, text) = match text.strip_prefix('@') {
        Some(path) => (
            path.to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| Error::not_found(format!("cannot read event file {path}: {e}")))?,
        ),
        None => ("--event".to_string(), text.to_string()),
    };
    serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!("{what} is not JSON: {e}"))
            .with_hint("quote it for the shell: --event '{\"id\": 7}', or pass --event @event.json")
    })
}
