use basin_service::pipeline::RunRecord;

use crate::lake::{Context, Lake};
use crate::output::{FormatArg, ListFormat, print, time};

#[derive(clap::Subcommand)]
#[command(
    after_help = "Every `basin run` is recorded with its code, parameters, the commit it read and
the commit it produced, and each model's status, time, rows and output lines."
)]
pub enum Command {
    /// List runs, newest first
    Ls {
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Show a run: its models, commits and error
    Show {
        /// The run's id (a prefix is enough)
        id: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Print a run's output lines (one model's with --model)
    Logs {
        id: String,
        #[arg(long)]
        model: Option<String>,
    },
    /// Run a run's stored code and parameters again on the commit it read, and say whether
    /// every stored output comes out identical
    Replay {
        id: String,
        /// Keep the replay's branches (`replay/<id>` and its run branch) even when every
        /// output is identical (they are kept anyway when outputs differ)
        #[arg(long)]
        keep_branch: bool,
        #[command(flatten)]
        format: FormatArg,
    },
}

pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    match cmd {
        Command::Ls { limit, format } => {
            let runs = lake.list_runs(limit).await?;
            let rows = runs
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.status.clone(),
                        r.project.clone(),
                        r.target.clone(),
                        time(r.started_at_ms),
                        format!(
                            "{:.1}s",
                            (r.finished_at_ms.unwrap_or(r.started_at_ms) - r.started_at_ms) as f64
                                / 1000.0
                        ),
                        r.models.len().to_string(),
                    ]
                })
                .collect();
            print(
                format.format,
                &runs,
                &[
                    "run", "status", "project", "target", "started", "took", "steps",
                ],
                rows,
            )
        }
        Command::Show { id, format } => {
            let record = lake.show_run(&id).await?;
            match format.format {
                ListFormat::Json => println!("{}", serde_json::to_string_pretty(&record)?),
                ListFormat::Table => {
                    println!(
                        "run {} ({}) of {} into `{}`, read {}{}",
                        record.id,
                        record.status,
                        record.project,
                        record.target,
                        &record.read_commit[..8.min(record.read_commit.len())],
                        record
                            .merged_commit
                            .as_ref()
                            .map(|c| format!(", merged as {}", &c[..8.min(c.len())]))
                            .unwrap_or_default()
                    );
                    if let Some(error) = &record.error {
                        println!("error: {error}");
                    }
                    print_models(&record)?;
                }
            }
            Ok(())
        }
        Command::Replay {
            id,
            keep_branch,
            format,
        } => replay(&lake, &id, keep_branch, format).await,
        Command::Logs { id, model } => {
            let record = lake.show_run(&id).await?;
            for m in &record.models {
                if model.as_ref().is_none_or(|want| want == &m.name) {
                    for line in &m.logs {
                        println!("[{}] {line}", m.name);
                    }
                }
            }
            Ok(())
        }
    }
}

/// `basin runs replay`: runs a past run again on the commit it read, and compares outputs.
async fn replay(lake: &Lake, id: &str, keep_branch: bool, format: FormatArg) -> anyhow::Result<()> {
    let sink = std::sync::Arc::new(|model: &str, _: basin_runtime::Stream, line: &str| {
        eprintln!("  [{model}] {line}")
    });
    let progress = std::sync::Arc::new(|_: &basin_service::pipeline::ModelRun| {});
    let report = lake
        .local("runs replay")?
        .pipelines()
        .replay_run(id, keep_branch, sink, progress)
        .await?;
    let rows = report
        .outputs
        .iter()
        .map(|o| {
            vec![
                o.model.clone(),
                o.table.clone(),
                o.original_rows.to_string(),
                o.replayed_rows.to_string(),
                if o.identical {
                    "identical"
                } else {
                    "DIFFERENT"
                }
                .to_string(),
            ]
        })
        .collect();
    print(
        format.format,
        &report,
        &["model", "table", "rows then", "rows now", "outputs"],
        rows,
    )?;
    crate::output::status(format!(
        "Replayed run {} as run {} on the commit it read ({}): {}",
        report.original,
        report.replay,
        &report.read_commit[..8.min(report.read_commit.len())],
        if report.identical {
            "every output is identical"
        } else {
            "outputs differ"
        }
    ));
    if !report.kept_branches.is_empty() {
        crate::output::status(format!(
            "Kept {} for a look (basin query \"...\" --ref {}; basin branch rm NAME when done)",
            report.kept_branches.join(" and "),
            report.kept_branches[0]
        ));
    }
    Ok(())
}

/// The per-model table of a run.
pub fn print_models(record: &RunRecord) -> anyhow::Result<()> {
    let rows = record
        .models
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.kind.clone(),
                if m.cache_hit {
                    format!("{} (cached)", m.status)
                } else {
                    m.status.clone()
                },
                format!("{:.0}", m.ms),
                m.rows.to_string(),
                m.table.clone().unwrap_or_default(),
                m.commit
                    .as_ref()
                    .map(|c| c[..8.min(c.len())].to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print(
        ListFormat::Table,
        &record.models,
        &["step", "kind", "status", "ms", "rows", "table", "commit"],
        rows,
    )
}
