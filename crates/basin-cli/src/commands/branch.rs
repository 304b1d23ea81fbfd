use std::path::Path;

use basin_catalog::RefKind;

use super::open;
use crate::output::{FormatArg, done, print, status, time};

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
            let refs = lakehouse.list_refs(RefKind::Branch).await?;
            let rows = refs
                .iter()
                .map(|r| {
                    vec![
                        format!("{}{}", if r.current { "* " } else { "  " }, r.name),
                        r.head.short().to_string(),
                        time(r.created_at_ms),
                        r.message.clone(),
                    ]
                })
                .collect();
            print(
                format.format,
                &refs,
                &["branch", "head", "committed", "message"],
                rows,
            )
        }
        Command::Create { name, from, format } => {
            let r = lakehouse.create_branch(&name, from.as_deref()).await?;
            done(format.format, &r, || {
                format!("Created branch `{}` at {}", r.name, r.head.short())
            })
        }
        Command::Rm { name } => {
            lakehouse.delete_branch(&name).await?;
            status(format!("Deleted branch `{name}`"));
            Ok(())
        }
    }
}
