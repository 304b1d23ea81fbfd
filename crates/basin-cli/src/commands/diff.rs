use std::path::Path;

use basin_catalog::Change;

use super::open;
use crate::output::{FormatArg, print};

#[derive(clap::Args)]
pub struct Args {
    /// The ref to compare from
    from: String,
    /// The ref to compare to
    to: String,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open(home).await?;
    let entries = lakehouse.diff(&args.from, &args.to).await?;
    let rows = entries
        .iter()
        .map(|e| {
            let change = match e.change {
                Change::Added => "added",
                Change::Changed => "changed",
                Change::Dropped => "dropped",
            };
            let kind = if e
                .from
                .as_ref()
                .or(e.to.as_ref())
                .is_some_and(|c| c.is_table())
            {
                "table"
            } else {
                "namespace"
            };
            vec![e.key.to_string(), kind.to_string(), change.to_string()]
        })
        .collect();
    print(
        args.format.format,
        &entries,
        &["name", "kind", "change"],
        rows,
    )
}
