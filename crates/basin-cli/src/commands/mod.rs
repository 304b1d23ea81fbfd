//! One file per subcommand: parse, call the service, print.

pub mod apply;
pub mod audit;
pub mod branch;
pub mod checkout;
pub mod completions;
pub mod demo;
pub mod deploy;
pub mod diff;
pub mod doctor;
pub mod env;
pub mod events;
pub mod export;
pub mod functions;
pub mod gc;
pub mod import;
pub mod ingest;
pub mod init;
pub mod invoke;
pub mod lineage;
pub mod log;
pub mod maintenance;
pub mod mcp;
pub mod merge;
pub mod namespace;
pub mod plan;
pub mod put;
pub mod query;
pub mod review;
pub mod run;
pub mod runs;
pub mod serve;
pub mod source;
pub mod table;
pub mod tag;
pub mod token;
pub mod usage;
pub mod worker;

use basin_service::Lakehouse;

/// What the long-running commands log unless `RUST_LOG` says otherwise: `info`, but only
/// warnings from Ballista, which logs every job's state and every stage's plan with its
/// metrics at `info` (tens of lines per distributed query).
const DEFAULT_LOG: &str = "info,ballista_core=warn,ballista_scheduler=warn,ballista_executor=warn";

/// Log lines on stderr (`RUST_LOG`, default [`DEFAULT_LOG`]); the first call sets them up.
/// Any command logs when `RUST_LOG` is set (`RUST_LOG=basin_sql=debug basin query ...` says
/// where a query's time went); `serve` and `worker` log without being asked.
pub(crate) fn log_to_stderr() {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// For the long-running commands (`serve`, `worker`): log lines on stderr, and first the
/// walls functions will run inside.
fn start_logging(lakehouse: &Lakehouse) -> anyhow::Result<()> {
    log_to_stderr();
    crate::output::status(lakehouse.runtime()?.walls().summary());
    Ok(())
}

/// Prints the branches or the tags (`basin branch ls`, `basin tag ls`); pipelines' own branches
/// only with `all` (the current one always).
async fn list_refs(
    lake: &crate::lake::Lake,
    kind: basin_catalog::RefKind,
    format: crate::output::ListFormat,
    all: bool,
) -> anyhow::Result<()> {
    let mut refs = lake.list_refs(kind).await?;
    if !all {
        let before = refs.len();
        refs.retain(|r| r.current || !basin_service::pipeline::is_pipeline_branch(&r.name));
        let hidden = before - refs.len();
        if hidden > 0 && format == crate::output::ListFormat::Table {
            crate::output::status(format!(
                "({hidden} run and replay branches not shown; `basin branch ls --all` lists them)"
            ));
        }
    }
    let rows = refs
        .iter()
        .map(|r| {
            let marker = if r.current { "* " } else { "  " };
            vec![
                format!("{marker}{}", r.name),
                r.head.short().to_string(),
                crate::output::time(r.created_at_ms),
                r.message.clone(),
            ]
        })
        .collect();
    crate::output::print(
        format,
        &refs,
        &[kind.as_str(), "commit", "committed", "message"],
        rows,
    )
}

/// Prints a created branch or tag.
fn created(format: crate::output::ListFormat, r: &basin_catalog::Ref) -> anyhow::Result<()> {
    crate::output::done(format, r, || {
        format!(
            "Created {} `{}` at {}",
            r.kind.as_str(),
            r.name,
            r.head.short()
        )
    })
}
