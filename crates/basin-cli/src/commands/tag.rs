use basin_catalog::RefKind;

use crate::lake::Context;
use crate::output::{FormatArg, status};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List tags
    Ls {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Name a commit: query it later with `--ref NAME`
    Create {
        name: String,
        /// The commit to tag: a branch, tag or REF@COMMIT (default: the current branch)
        #[arg(long, value_name = "REF")]
        at: Option<String>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Delete a tag (the commit stays)
    Rm { name: String },
}

pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    match cmd {
        Command::Ls { format } => super::list_refs(&lake, RefKind::Tag, format.format, true).await,
        Command::Create { name, at, format } => {
            let r = lake.create_tag(&name, at.as_deref()).await?;
            super::created(format.format, &r)
        }
        Command::Rm { name } => {
            lake.delete_tag(&name).await?;
            status(format!("Deleted tag `{name}`"));
            Ok(())
        }
    }
}
