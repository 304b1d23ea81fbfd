use std::path::{Path, PathBuf};

use crate::lake::open_local;
use crate::output::{FormatArg, ListFormat, print, status, time};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List deployed functions with their triggers and event counts
    Ls {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Show a deployed function: trigger, target, limits, version and its code
    Show {
        name: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Remove a deployed function (its queued events stay, for `basin events`)
    Rm { name: String },
}

pub async fn run(cmd: Command, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    match cmd {
        Command::Ls { format } => {
            let functions = lakehouse.triggers().function_statuses().await?;
            let rows = functions
                .iter()
                .map(|s| {
                    let (f, c) = (&s.function, &s.events);
                    vec![
                        f.name.clone(),
                        s.trigger.clone(),
                        f.declaration.to.clone().unwrap_or_default(),
                        f.version.clone(),
                        time(f.deployed_at_ms),
                        f.deployer().to_string(),
                        format!(
                            "{} pending, {} running, {} ok, {} failed, {} dead",
                            c.pending, c.running, c.succeeded, c.failed, c.dead
                        ),
                    ]
                })
                .collect();
            print(
                format.format,
                &functions,
                &[
                    "function", "trigger", "to", "version", "deployed", "by", "events",
                ],
                rows,
            )
        }
        Command::Show { name, format } => {
            let f = lakehouse.deployed().get(&name).await?;
            if format.format == ListFormat::Json {
                return print(format.format, &f, &[], vec![]);
            }
            let d = &f.declaration;
            println!("function  {}", f.name);
            println!("trigger   {}", f.describe_trigger());
            if let Some(to) = &d.to {
                println!(
                    "to        {to} (batches of up to {}, exactly once per event)",
                    d.batch_size
                );
            }
            println!("attempts  {}", d.max_attempts);
            println!("version   {} (environment {})", f.version, f.env_hash);
            println!("file      {}:{}", PathBuf::from(&f.file).display(), d.line);
            println!("deployed  {} by {}\n", time(f.deployed_at_ms), f.deployer());
            println!("{}", f.source.trim_end());
            Ok(())
        }
        Command::Rm { name } => {
            lakehouse.deployed().remove(&name).await?;
            status(format!("Removed function `{name}`"));
            Ok(())
        }
    }
}
