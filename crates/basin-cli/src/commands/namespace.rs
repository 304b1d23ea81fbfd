use crate::lake::Context;
use crate::output::{FormatArg, print, status};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List namespaces
    Ls {
        /// A branch, tag or REF@COMMIT (default: the current branch)
        #[arg(long = "ref", value_name = "REF")]
        at: Option<String>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Create a namespace
    Create {
        name: String,
        #[arg(long, value_name = "BRANCH")]
        branch: Option<String>,
    },
    /// Drop an empty namespace
    Rm {
        name: String,
        #[arg(long, value_name = "BRANCH")]
        branch: Option<String>,
    },
}

pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    match cmd {
        Command::Ls { at, format } => {
            let names = lake.list_namespaces(at.as_deref()).await?;
            let rows = names.iter().map(|n| vec![n.clone()]).collect();
            print(format.format, &names, &["namespace"], rows)
        }
        Command::Create { name, branch } => {
            let commit = lake.create_namespace(&name, branch.as_deref()).await?;
            status(format!(
                "Created namespace `{name}` (commit {})",
                commit.id.short()
            ));
            Ok(())
        }
        Command::Rm { name, branch } => {
            let commit = lake.drop_namespace(&name, branch.as_deref()).await?;
            status(format!(
                "Dropped namespace `{name}` (commit {})",
                commit.id.short()
            ));
            Ok(())
        }
    }
}
