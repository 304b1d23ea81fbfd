use std::path::PathBuf;

use crate::lake::Context;
use crate::output::{FormatArg, ListFormat, print, status};

#[derive(clap::Args)]
#[command(
    after_help = "Deploys the functions of DIR's .py files that declare a trigger:

  @basin.on_object(bucket=\"landing\", suffix=\".csv\", to=\"raw.orders\", batch_size=100)
  def load(event, context):
      return context.read_table()

`basin serve` then runs them: for each file landing in .basin/buckets/landing/ (or `basin put`),
appending each file's rows to raw.orders exactly once. A deployed version is fixed: its code
and environment make its version, and deploying changed code makes a new one.

A function writes with the grants of whoever deployed it. With --remote, the folder's .py files
and basin.toml go to that server and the token deploys them as itself: a token that is not an
admin changes and removes only its own functions, and deploys none that writes where it may
not or reads secrets.

Examples:
  basin deploy functions/ --plan     # what would be added, changed or removed
  basin deploy functions/
  basin --remote https://basin.example.com --token $TOKEN deploy functions/"
)]
pub struct Args {
    /// The folder holding the functions (default: the current folder)
    dir: Option<PathBuf>,
    /// Show what would change, deploy nothing
    #[arg(long)]
    plan: bool,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    if !args.plan {
        status("deploying: building environments not built yet (once, then cached)");
    }
    let plan = lake.deploy(&dir, !args.plan).await?;
    let rows = plan
        .changes
        .iter()
        .map(|c| {
            let sign = match c.action.as_str() {
                "add" => "+",
                "remove" => "-",
                "change" => "~",
                _ => " ",
            };
            vec![
                format!("{sign} {}", c.function),
                c.action.clone(),
                c.trigger.clone(),
                c.to.clone().unwrap_or_default(),
                c.version.clone(),
                c.detail.clone(),
            ]
        })
        .collect();
    print(
        args.format.format,
        &plan,
        &[
            "function",
            "action",
            "trigger",
            "to",
            "version",
            "what changed",
        ],
        rows,
    )?;
    for warning in &plan.warnings {
        status(format!("warning: {warning}"));
    }
    if args.format.format == ListFormat::Table {
        let count = |action: &str| plan.changes.iter().filter(|c| c.action == action).count();
        let (add, change, remove) = (count("add"), count("change"), count("remove"));
        status(if plan.changes.is_empty() {
            format!("{} declares no triggered functions", dir.display())
        } else if plan.applied {
            format!("Deployed: {add} added, {change} changed, {remove} removed")
        } else {
            format!(
                "Plan: {add} to add, {change} to change, {remove} to remove; apply with `basin deploy {}`",
                dir.display()
            )
        });
    }
    Ok(())
}
