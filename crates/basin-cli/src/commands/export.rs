use crate::lake::{Context, Lake};

#[derive(clap::Args)]
#[command(
    after_help = "Writes the lakehouse as a declaration on stdout: namespaces and tables of
a branch (columns, partition, sort, properties), the other branches (not pipelines' run
branches), tags at their commits, and named tokens with their role or grants (never a secret).
`basin plan` on it shows `No changes.` basin.toml holds settings too: where it has some,
append (>>) rather than replace (>).

Examples:
  basin export > basin.toml          # then keep it in git, and `basin plan` in CI
  basin export --branch dev"
)]
pub struct Args {
    /// The branch whose namespaces and tables to write (default: the current branch)
    #[arg(long, value_name = "BRANCH")]
    branch: Option<String>,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let text = match ctx.open().await? {
        Lake::Local(local) => local.declared().export(args.branch.as_deref()).await?,
        Lake::Remote(remote) => {
            remote
                .get_text(&["declared", "export"], &[("branch", args.branch)])
                .await?
        }
    };
    print!("{text}");
    Ok(())
}
