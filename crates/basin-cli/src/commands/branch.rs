use std::path::Path;

use basin_catalog::RefKind;

use super::open;
use crate::output::{FormatArg, status};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List branches (the current one is marked with *)
    Ls {
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

pub async fn run(cmd: Command, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open(home).await?;
    match cmd {
        Command::Ls { format } => {
            super::list_refs(&lakehouse, RefKind::Branch, format.format).await
        }
        Command::Create { name, from, format } => {
            let r = lakehouse.create_branch(&name, from.as_deref()).await?;
            super::created(format.format, &r)
        }
        Command::Rm { name } => {
            lakehouse.delete_branch(&name).await?;
            status(format!("Deleted branch `{name}`"));
            Ok(())
        }
    }
}
