use crate::lake::Context;
use crate::output::{FormatArg, ListFormat, print, status};

#[derive(clap::Args)]
pub struct Args {
    /// The branch (or any ref) whose changes to bring in
    source: String,
    /// The branch to merge into (default: the current branch)
    #[arg(long, value_name = "BRANCH")]
    into: Option<String>,
    /// Show what would change, write nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    let report = lake
        .merge(&args.source, args.into.as_deref(), args.dry_run)
        .await?;
    let rows = report
        .changes
        .iter()
        .map(|c| {
            let how = if c.appends_merged {
                "changed (appends merged)".to_string()
            } else {
                format!("{:?}", c.change).to_lowercase()
            };
            vec![c.key.clone(), how]
        })
        .collect();
    if args.format.format == ListFormat::Table {
        match (&report.commit, report.dry_run, report.changes.is_empty()) {
            (_, _, true) => status(format!(
                "`{}` is up to date with `{}`: nothing to merge",
                report.target, report.source
            )),
            (_, true, false) => status(format!(
                "Dry run: merging `{}` into `{}` would change:",
                report.source, report.target
            )),
            (Some(c), _, _) => status(format!(
                "Merged `{}` into `{}` as commit {}",
                report.source,
                report.target,
                &c[..12]
            )),
            (None, false, false) => {}
        }
        if report.changes.is_empty() {
            return Ok(());
        }
    }
    print(args.format.format, &report, &["table", "change"], rows)
}
