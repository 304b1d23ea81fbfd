use std::path::Path;

use basin_catalog::RefKind;

use super::open;
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

pub async fn run(cmd: Command, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open(home).await?;
    match cmd {
        Command::Ls { format } => super::list_refs(&lakehouse, RefKind::Tag, format.format).await,
        Command::Create { name, at, format } => {
            let r = lakehouse.create_tag(&name, at.as_deref()).await?;
            super::created(format.format, &r)
        }
        Command::Rm { name } => {
            lakehouse.delete_tag(&name).await?;
            status(format!("Deleted tag `{name}`"));
            Ok(())
        }
    }
}
