use basin_catalog::RefKind;

use crate::lake::Context;
use crate::output::{FormatArg, status};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List branches (the current one is marked with *); pipelines' `run/*` and `replay/*`
    /// branches only with --all
    Ls {
        /// Also list the branches pipeline runs and replays made
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Create a branch; copies no data, whatever the number of tables
    Create {
        name: String,
        /// Where the branch starts: a branch, tag or REF@COMMIT (default: the current branch)
        #[arg(long, value_name = "REF")]
        from: Option<String>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Delete a branch (not `main`, and not the one you are on)
    Rm { name: String },
}

pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    match cmd {
        Command::Ls { all, format } => {
            super::list_refs(&lake, RefKind::Branch, format.format, all).await
        }
        Command::Create { name, from, format } => {
            let r = lake.create_branch(&name, from.as_deref()).await?;
            super::created(format.format, &r)
        }
        Command::Rm { name } => {
            lake.delete_branch(&name).await?;
            status(format!("Deleted branch `{name}`"));
            Ok(())
        }
    }
}
