use std::path::Path;

use basin_catalog::{EventFilter, EventState};

use crate::lake::open_local;
use crate::output::{FormatArg, ListFormat, print, status, time};

#[derive(clap::Subcommand)]
#[command(
    after_help = "Every trigger stores its event before anything runs. An event is pending, running
(leased to a worker; if the worker dies, the lease runs out and another takes it), succeeded,
failed (retried with a doubling backoff) or dead (failed every attempt; `retry` brings it back).

Examples:
  basin events ls --state dead
  basin events show 3f2a
  basin events retry --dead"
)]
pub enum Command {
    /// List events, newest first
    Ls {
        /// pending, running, succeeded, failed or dead
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        #[arg(long, value_name = "NAME")]
        function: Option<String>,
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Show an event: its payload, attempts, error and logs
    Show {
        /// The event's id (a prefix is enough)
        id: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Queue a failed or dead event again, or every dead one
    Retry {
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<String>,
        /// Every dead event
        #[arg(long)]
        dead: bool,
    },
}

pub async fn run(cmd: Command, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    match cmd {
        Command::Ls {
            state,
            function,
            limit,
            format,
        } => {
            let state = state.as_deref().map(EventState::from_user).transpose()?;
            let filter = EventFilter {
                state,
                function,
                limit,
            };
            let events = lakehouse.queue().events(&filter).await?;
            let rows = events
                .iter()
                .map(|e| {
                    vec![
                        e.id.clone(),
                        e.function.clone(),
                        e.state.as_str().to_string(),
                        format!("{}/{}", e.attempts, e.max_attempts),
                        e.node.clone().unwrap_or_default(),
                        time(e.created_at_ms),
                        describe(&e.payload),
                        e.error
                            .as_deref()
                            .and_then(|m| m.lines().next())
                            .unwrap_or_default()
                            .to_string(),
                    ]
                })
                .collect();
            print(
                format.format,
                &events,
                &[
                    "event", "function", "state", "attempts", "node", "created", "about", "error",
                ],
                rows,
            )
        }
        Command::Show { id, format } => {
            let e = lakehouse.queue().event(&id).await?;
            if format.format == ListFormat::Json {
                return print(format.format, &e, &[], vec![]);
            }
            println!("event     {}", e.id);
            println!("function  {}", e.function);
            println!("state     {}", e.state.as_str());
            println!("attempts  {} of {}", e.attempts, e.max_attempts);
            if let Some(node) = &e.node {
                println!("node      {node}");
            }
            println!("created   {}", time(e.created_at_ms));
            if let Some(commit) = &e.commit {
                println!("commit    {commit}");
            }
            println!("payload   {}", e.payload);
            if let Some(result) = &e.result {
                println!("result    {result}");
            }
            if let Some(error) = &e.error {
                println!("\nerror:\n{error}");
            }
            if !e.logs.is_empty() {
                println!("\nlogs:\n{}", e.logs.trim_end());
            }
            Ok(())
        }
        Command::Retry { id, dead: _ } => {
            let n = lakehouse.queue().retry_events(id.as_deref()).await?;
            status(format!(
                "Queued {n} event{} again; a running `basin serve` picks {} up",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" }
            ));
            Ok(())
        }
    }
}

/// What an event is about, in a few words.
fn describe(payload: &serde_json::Value) -> String {
    let text = |key: &str| payload.get(key).and_then(|v| v.as_str());
    match (text("type"), text("bucket"), text("key")) {
        (_, Some(bucket), Some(key)) => format!("{bucket}/{key}"),
        (Some("schedule"), _, _) => format!("slot {}", text("scheduled_at").unwrap_or_default()),
        _ => payload.to_string().chars().take(40).collect(),
    }
}
