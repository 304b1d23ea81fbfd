use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basin_core::Error;
use basin_runtime::Stream;
use basin_service::Lakehouse;
use basin_service::pipeline::{ModelRun, RunRecord, RunRequest};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::lake::{Context, Lake};
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
    /// Run everything, merge nothing (the run branch stays for a look)
    #[arg(long)]
    dry_run: bool,
    /// Keep the run's branch `run/<id>` after it merges (by default it is deleted; failed
    /// and dry runs always keep theirs)
    #[arg(long)]
    keep_branch: bool,
    /// Run every model, even those whose code, environment, parameters and inputs are
    /// unchanged since an earlier run (whose output is otherwise reused)
    #[arg(long)]
    no_cache: bool,
    /// Rebuild incremental models whole, from every row of their inputs (they otherwise
    /// read only what changed since their last run)
    #[arg(long)]
    full_refresh: bool,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
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
        full_refresh: args.full_refresh,
        keep_branch: args.keep_branch,
    };
    let record = match &lake {
        Lake::Local(lakehouse) => run_here(lakehouse, request).await?,
        Lake::Remote(_) => {
            status("running on the server: each model's lines come with the run's record");
            lake.run_remote(&request).await?
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

/// Runs the project on this machine, its progress shown as it goes; Ctrl-C stops it.
async fn run_here(lakehouse: &Lakehouse, request: RunRequest) -> anyhow::Result<RunRecord> {
    if !request.dry_run {
        status(lakehouse.runtime()?.walls().summary());
    }
    let view = Arc::new(LiveView::new());
    let lines = view.clone();
    let sink = Arc::new(move |model: &str, _: Stream, line: &str| {
        lines.line(format!("  [{model}] {line}"))
    });
    let steps = view.clone();
    let progress = Arc::new(move |m: &ModelRun| steps.step(m));
    let pipelines = lakehouse.pipelines();
    tokio::select! {
        record = pipelines.run(request, sink, progress) => Ok(record?),
        _ = tokio::signal::ctrl_c() => {
            lakehouse.runtime()?.kill_all().await;
            Err(Error::invalid("interrupted: the run was stopped; the target is untouched").into())
        }
    }
}

/// The run's progress on stderr: on a terminal, a spinner per running step with finished
/// steps and output lines printed above; elsewhere, one line per event.
struct LiveView {
    bars: Option<MultiProgress>,
    running: Mutex<HashMap<String, ProgressBar>>,
}

impl LiveView {
    fn new() -> Self {
        Self {
            bars: std::io::stderr().is_terminal().then(MultiProgress::new),
            running: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, text: String) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => status(text),
        }
    }

    fn step(&self, m: &ModelRun) {
        if m.status == "running" {
            match &self.bars {
                Some(bars) => {
                    let bar = bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .expect("a valid template"),
                    );
                    bar.set_message(format!("{} ({})", m.name, m.kind));
                    bar.enable_steady_tick(Duration::from_millis(100));
                    self.running
                        .lock()
                        .expect("bars")
                        .insert(m.name.clone(), bar);
                }
                None => status(format!("> {} ({})", m.name, m.kind)),
            }
            return;
        }
        if let Some(bar) = self.running.lock().expect("bars").remove(&m.name) {
            bar.finish_and_clear();
        }
        self.line(if m.status == "ok" {
            format!(
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
            )
        } else {
            format!(
                "  FAILED {} after {:.0} ms: {}",
                m.name,
                m.ms,
                m.error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or("")
            )
        });
    }
}
