use crate::lake::Context;
use crate::output::{FormatArg, ListFormat, print, time};

#[derive(clap::Args)]
pub struct Args {
    /// A branch, tag or REF@COMMIT (default: the current branch)
    #[arg(value_name = "REF")]
    at: Option<String>,
    /// How many commits to show
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    let entries = lake.log(args.at.as_deref(), args.limit).await?;
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                e.id.short().to_string(),
                time(e.created_at_ms),
                e.author.clone(),
                e.door.clone().unwrap_or_default(),
                e.message.clone(),
                e.changed.join(", "),
            ]
        })
        .collect();
    print(
        args.format.format,
        &entries,
        &["commit", "time", "author", "door", "message", "changed"],
        rows,
    )?;
    if let Some(cut) = entries.last().and_then(|e| e.history_cut.as_ref())
        && args.format.format == ListFormat::Table
    {
        println!(
            "history before {} was removed on {} ({})",
            cut.commit.short(),
            time(cut.removed_at_ms),
            cut.note
        );
    }
    Ok(())
}
