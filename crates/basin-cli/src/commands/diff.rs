use std::path::Path;

use basin_catalog::Change;

use crate::lake::open_local;
use crate::output::{FormatArg, ListFormat, print, status};

#[derive(clap::Args)]
#[command(
    after_help = "Per table: the data files and rows added and removed between the two
refs (a file both sides read counts as neither), and the table's snapshot on each side.

Examples:
  basin diff main dev
  basin diff v1 main --format json"
)]
pub struct Args {
    /// The ref to compare from
    from: String,
    /// The ref to compare to
    to: String,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    let diffs = lakehouse.refs().diff_tables(&args.from, &args.to).await?;
    if diffs.is_empty() && args.format.format == ListFormat::Table {
        status(format!(
            "no differences between `{}` and `{}`",
            args.from, args.to
        ));
        return Ok(());
    }
    let signed = |added: u64, removed: u64| match (added, removed) {
        (0, 0) => "0".to_string(),
        (a, 0) => format!("+{a}"),
        (0, r) => format!("-{r}"),
        (a, r) => format!("+{a} -{r}"),
    };
    let short = |s: &Option<String>| s.as_deref().unwrap_or("-").to_string();
    let rows = diffs
        .iter()
        .map(|d| {
            let e = &d.entry;
            let change = match e.change {
                Change::Added => "added",
                Change::Changed => "changed",
                Change::Dropped => "dropped",
            };
            let table = e
                .from
                .as_ref()
                .or(e.to.as_ref())
                .is_some_and(|c| c.is_table());
            if !table {
                return vec![
                    e.key.to_string(),
                    "namespace".into(),
                    change.into(),
                    String::new(),
                    String::new(),
                    String::new(),
                ];
            }
            vec![
                e.key.to_string(),
                "table".into(),
                change.into(),
                signed(d.rows_added, d.rows_removed),
                signed(d.files_added, d.files_removed),
                format!("{} -> {}", short(&d.from_snapshot), short(&d.to_snapshot)),
            ]
        })
        .collect();
    print(
        args.format.format,
        &diffs,
        &["name", "kind", "change", "rows", "files", "snapshot"],
        rows,
    )
}
