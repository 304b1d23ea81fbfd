use std::io::{BufRead, IsTerminal, Write};

use crate::commands::plan::{Target, show};
use crate::lake::Context;
use crate::output::{FormatArg, ListFormat, status};

#[derive(clap::Args)]
#[command(
    after_help = "Plans as `basin plan` does, shows the plan, asks, and carries it out:
namespaces and tables in one commit on the branch (a failure there changes nothing), then
branches, tags, tokens and functions. A replace (a change Iceberg cannot make in place, such
as a column's type it cannot promote) is refused unless --allow-replace says so; the plan says
what it loses. A token's secret is printed once, here, and never again. With --remote, the
server applies the file (an admin's token) only if its plan is still the one shown.

Examples:
  basin apply
  basin apply --auto-approve --format json     # in CI
  basin apply --allow-replace"
)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// Apply without asking (needed when stdin is not a terminal)
    #[arg(long)]
    auto_approve: bool,
    /// Allow replaces: tables made anew (their rows on the branch go) and tokens given new secrets
    #[arg(long)]
    allow_replace: bool,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    let plan = args.target.plan(&lake).await?;
    if plan.changes.is_empty() {
        // Nothing to do; the state is recorded, so objects found as declared are now managed.
        let plan = args.target.apply(&lake, plan, args.allow_replace).await?;
        return show(&plan, args.format.format);
    }
    if !args.auto_approve {
        show(&plan, ListFormat::Table)?;
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                basin_core::Error::invalid("not applied: nobody was asked to approve")
                    .with_hint("run it in a terminal to answer, or pass --auto-approve")
            );
        }
        eprint!(
            "Apply this plan to `{}`? Only `yes` applies it: ",
            plan.branch
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            status("Not applied.");
            return Ok(());
        }
    }
    let plan = args.target.apply(&lake, plan, args.allow_replace).await?;
    if args.format.format == ListFormat::Json {
        return show(&plan, ListFormat::Json);
    }
    let mut out = std::io::stdout().lock();
    if args.auto_approve {
        show(&plan, ListFormat::Table)?;
    } else {
        // The plan was shown before the question.
        writeln!(out, "{}", plan.summary())?;
    }
    for token in &plan.tokens {
        writeln!(out, "token {} ({}): {}", token.name, token.id, token.secret)?;
    }
    if !plan.tokens.is_empty() {
        status("Keep the secrets above: they are shown this once.");
    }
    if let Some(commit) = &plan.commit {
        status(format!(
            "Namespaces and tables changed in commit {} on `{}`.",
            &commit[..12.min(commit.len())],
            plan.branch
        ));
    }
    Ok(())
}
