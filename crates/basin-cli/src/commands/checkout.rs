use std::path::Path;

use crate::lake::open_local;
use crate::output::status;

#[derive(clap::Args)]
pub struct Args {
    /// The branch to switch to
    branch: String,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    let at = lakehouse.refs().checkout(&args.branch).await?;
    status(format!(
        "Switched to branch `{}` (at {})",
        args.branch,
        at.commit.short()
    ));
    Ok(())
}
