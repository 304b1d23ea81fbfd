use std::io::Write;
use std::path::PathBuf;

use basin_service::declared::{Change, Declaration, Plan};
use serde_json::json;

use crate::lake::{Context, Lake};
use crate::output::{FormatArg, ListFormat};

#[derive(clap::Args)]
#[command(
    after_help = "Compares what basin.toml declares with the lakehouse and prints what
`basin apply` would do, per object: + create, ~ update in place, -/+ replace, - destroy, each
with its reasons. Changes nothing.

  [namespaces.sales]
  [tables.\"sales.orders\"]
  columns = [
    { name = \"id\", type = \"long\", required = true },
    { name = \"amount\", type = \"decimal(12, 2)\" },
  ]
  partition = [\"bucket(8, id)\"]
  [branches.dev]
  [tokens.ci]
  role = \"writer\"

Namespaces and tables are declared for one branch (--branch, default: the current one).
An object changed by hand since the last apply is shown as drift. An object the last apply
made that the file no longer declares is destroyed; objects never declared are left alone.
`basin export > basin.toml` starts a declaration from the lakehouse as it is. With --remote,
the file is sent to the server (an admin's token) and planned there.
See docs/declarative.md.

Examples:
  basin plan
  basin plan --branch dev --format json
  basin --remote https://basin.example.com --token $TOKEN plan --file lakehouse.toml"
)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    format: FormatArg,
}

/// Which declaration, for which branch.
#[derive(clap::Args)]
pub struct Target {
    /// The declaration (default: the lakehouse's basin.toml; with --remote, ./basin.toml)
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The branch its namespaces and tables are for (default: the current branch)
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
}

impl Target {
    /// The declaration's file: as named, or the lakehouse's basin.toml.
    pub fn file(&self, lake: &Lake) -> PathBuf {
        match (&self.file, lake) {
            (Some(file), _) => file.clone(),
            (None, Lake::Local(local)) => local.declared().default_file(),
            (None, Lake::Remote(_)) => PathBuf::from("basin.toml"),
        }
    }

    /// Plans here, or sends the file to `--remote` to plan there.
    pub async fn plan(&self, lake: &Lake) -> anyhow::Result<Plan> {
        let file = self.file(lake);
        Ok(match lake {
            Lake::Local(local) => {
                let declaration = Declaration::read(&file)?;
                local
                    .declared()
                    .plan(&declaration, self.branch.as_deref())
                    .await?
            }
            Lake::Remote(remote) => {
                let body = json!({ "declaration": self.text(&file)?, "branch": self.branch });
                remote.post(&["declared", "plan"], &body).await?
            }
        })
    }

    /// Applies a plan made here, or asks `--remote` to apply what it plans now if that is
    /// still `approved`.
    pub async fn apply(
        &self,
        lake: &Lake,
        plan: Plan,
        allow_replace: bool,
    ) -> anyhow::Result<Plan> {
        let file = self.file(lake);
        Ok(match lake {
            Lake::Local(local) => {
                let declaration = Declaration::read(&file)?;
                local
                    .declared()
                    .apply(&declaration, plan, allow_replace)
                    .await?
            }
            Lake::Remote(remote) => {
                let approved: &[Change] = &plan.changes;
                let body = json!({
                    "declaration": self.text(&file)?,
                    "branch": self.branch,
                    "approved": approved,
                    "allow_replace": allow_replace,
                });
                remote.post(&["declared", "apply"], &body).await?
            }
        })
    }

    fn text(&self, file: &std::path::Path) -> anyhow::Result<String> {
        std::fs::read_to_string(file).map_err(|e| {
            anyhow::anyhow!(
                basin_core::Error::io_with(format!("cannot read {}", file.display()), e)
                    .with_hint("name the declaration with --file")
            )
        })
    }
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    let plan = args.target.plan(&lake).await?;
    show(&plan, args.format.format)
}

/// Prints a plan: Terraform's layout for people, the plan itself as JSON for scripts.
pub fn show(plan: &Plan, format: ListFormat) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == ListFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(plan)?)?;
        return Ok(());
    }
    if !plan.changes.is_empty() {
        writeln!(
            out,
            "{} for branch `{}`:\n",
            if plan.applied { "Applied" } else { "Plan" },
            plan.branch
        )?;
    }
    for change in &plan.changes {
        writeln!(
            out,
            "  {:<3} {} {}",
            change.action.sign(),
            change.kind.as_str(),
            change.name
        )?;
        for reason in &change.reasons {
            writeln!(out, "        {reason}")?;
        }
        if let Some(loses) = &change.loses {
            writeln!(out, "        loses: {loses}")?;
        }
        if let Some(drift) = &change.drift {
            writeln!(out, "        drift: {drift}")?;
        }
    }
    for drift in &plan.drift {
        writeln!(out, "  drift: {drift}")?;
    }
    if !plan.changes.is_empty() || !plan.drift.is_empty() {
        writeln!(out)?;
    }
    writeln!(out, "{}", plan.summary())?;
    Ok(())
}
