use std::path::{Path, PathBuf};
use std::sync::Arc;

use basin_catalog::Error;
use basin_runtime::Stream;
use basin_service::pipeline::{ModelRun, RunRequest};

use super::open;
use crate::output::{FormatArg, ListFormat, status};

#[derive(clap::Args)]
#[command(
    after_help = "A project is a folder with basin.toml ([project] name and namespace,
[parameters]), *.py files with @basin.model functions and @basin.expectation checks, and
*.sql files whose name is the model they produce. Inputs name tables (ns.table) or other
models (a bare name: a model of the project first, then a table of its namespace).

A run cuts the branch run/<id> from the target, runs the models in dependency order
(independent ones in parallel), runs the expectations, and merges into the target in one
commit. If anything fails, the target is untouched and run/<id> is kept to look at.

Examples:
  basin init --project shop && cd shop && basin run
  basin run --branch dev --param min_amount=10
  basin run --dry-run                      # everything but the merge
  basin runs show <id>"
)]
pub struct Args {
    /// The project folder
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The branch to publish to (default: the current branch)
    #[arg(long)]
    branch: Option<String>,
    /// A parameter, NAME=VALUE (repeat for more)
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Run everything, merge nothing
    #[arg(long)]
    dry_run: bool,
    /// Run every model, even those whose code, environment, parameters and inputs are
    /// unchanged since an earlier run (whose output is otherwise reused)
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open(home).await?;
    let params = args
        .params
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| Error::invalid(format!("`--param {p}` is not NAME=VALUE")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = RunRequest {
        dir: args.dir,
        branch: args.branch,
        params,
        dry_run: args.dry_run,
        no_cache: args.no_cache,
    };
    let sink = Arc::new(|model: &str, _: Stream, line: &str| eprintln!("  [{model}] {line}"));
    let progress = Arc::new(|m: &ModelRun| match m.status.as_str() {
        "running" => status(format!("> {} ({})", m.name, m.kind)),
        "ok" => status(format!(
            "  ok {} in {:.0} ms, {} rows{}{}",
            m.name,
            m.ms,
            m.rows,
            if m.cache_hit {
                " (unchanged: reused)"
            } else {
                ""
            },
            m.table
                .as_ref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default()
        )),
        _ => status(format!(
            "  FAILED {} after {:.0} ms: {}",
            m.name,
            m.ms,
            m.error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or("")
        )),
    });
    let record = tokio::select! {
        record = lakehouse.run_pipeline(request, sink, progress) => record?,
        _ = tokio::signal::ctrl_c() => {
            lakehouse.runtime()?.kill_all().await;
            return Err(Error::invalid("interrupted: the run was stopped; the target is untouched").into());
        }
    };
    match args.format.format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&record)?),
        ListFormat::Table => super::runs::print_models(&record)?,
    }
    let seconds = (record.finished_at_ms.unwrap_or(record.started_at_ms) - record.started_at_ms)
        as f64
        / 1000.0;
    match record.merged_commit.as_deref() {
        Some(commit) => status(format!(
            "Run {} succeeded in {seconds:.1}s: merged {} into `{}` (commit {})",
            record.id,
            record.branch,
            record.target,
            &commit[..8.min(commit.len())]
        )),
        None if record.status == "dry-run" => status(format!(
            "Dry run {} finished in {seconds:.1}s; nothing merged. Look at it: basin query \"...\" --ref {}",
            record.id, record.branch
        )),
        None => status(format!(
            "Run {} succeeded in {seconds:.1}s; nothing to merge",
            record.id
        )),
    }
    Ok(())
}
