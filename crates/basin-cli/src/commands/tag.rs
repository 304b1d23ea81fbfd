use std::path::Path;

use basin_catalog::RefKind;

use super::open;
use crate::output::{FormatArg, done, print, status, time};

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
        Command::Ls { format } => {
            let refs = lakehouse.list_refs(RefKind::Tag).await?;
            let rows = refs
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.head.short().to_string(),
                        time(r.created_at_ms),
                        r.message.clone(),
                    ]
                })
                .collect();
            print(
                format.format,
                &refs,
                &["tag", "commit", "committed", "message"],
                rows,
            )
        }
        Command::Create { name, at, format } => {
            let r = lakehouse.create_tag(&name, at.as_deref()).await?;
            done(format.format, &r, || {
                format!("Created tag `{}` at {}", r.name, r.head.short())
            })
        }
        Command::Rm { name } => {
            lakehouse.delete_tag(&name).await?;
            status(format!("Deleted tag `{name}`"));
            Ok(())
        }
    }
}
