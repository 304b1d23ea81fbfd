//! `basin audit ls`: who changed what, and what was refused.

use basin_core::units::parse_duration;

use crate::lake::Context;
use crate::output::{FormatArg, print, time};

#[derive(clap::Subcommand)]
#[command(
    after_help = "Every commit and change to branches and tags, every refusal (a protected \
branch, a missing grant, an unknown token), and every request to `basin serve` that changes \
something is recorded: who, when, through which door (local, api, console, iceberg-rest, \
postgres, function) and how it ended. [maintenance] keep_audit says how long (default 365d).

Examples:
  basin audit ls --since 1d
  basin audit ls --principal ana --format json"
)]
pub enum Command {
    /// List entries, newest first
    Ls {
        /// Only this principal's (a token's name, function:NAME, or a local user)
        #[arg(long)]
        principal: Option<String>,
        /// Only entries this recent (`30m`, `1d`, `7d`)
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// How many
        #[arg(short = 'n', long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        format: FormatArg,
    },
}

pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    let Command::Ls {
        principal,
        since,
        limit,
        format,
    } = cmd;
    let since_ms = match since {
        Some(text) => {
            let ago = parse_duration(&text)
                .map_err(|e| e.with_hint("give a duration like 30m, 12h or 7d"))?;
            Some(basin_core::time::now_ms() - ago.as_millis() as i64)
        }
        None => None,
    };
    let entries = lake.audit(principal.as_deref(), since_ms, limit).await?;
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                time(e.at_ms),
                e.principal.clone(),
                e.door.clone(),
                e.action.clone(),
                e.target.clone(),
                e.outcome.clone(),
                e.detail.clone(),
            ]
        })
        .collect();
    print(
        format.format,
        &entries,
        &[
            "time",
            "principal",
            "door",
            "action",
            "target",
            "outcome",
            "detail",
        ],
        rows,
    )
}
