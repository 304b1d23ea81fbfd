use basin_service::Role;

use crate::lake::Context;
use crate::output::{FormatArg, print, status, time};

#[derive(clap::Subcommand)]
#[command(
    after_help = "Tokens let clients use `basin serve` (Authorization: Bearer TOKEN). A reader reads
(refs, tables, queries, runs, usage); a writer also changes data; an admin also manages
tokens. The secret is printed once; Basin keeps only its SHA-256.

Examples:
  basin token create --role reader --name dashboards
  basin token ls
  basin token rm 1a2b3c4d"
)]
pub enum Command {
    /// Create a token and print its secret (once)
    Create {
        /// reader, writer or admin
        #[arg(long)]
        role: String,
        /// A name to recognize it by
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (never their secrets)
    Ls {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Revoke a token
    Rm { id: String },
}

pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    match cmd {
        Command::Create { role, name } => {
            let role = Role::parse(&role)?;
            let (token, secret) = lake.create_token(&name, role).await?;
            println!("{secret}");
            status(format!(
                "Created {} token {}; this is the only time its secret is shown",
                role.as_str(),
                token.id
            ));
        }
        Command::Ls { format } => {
            let tokens = lake.list_tokens().await?;
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.role.clone(),
                        t.name.clone(),
                        time(t.created_at_ms),
                    ]
                })
                .collect();
            print(
                format.format,
                &tokens,
                &["token", "role", "name", "created"],
                rows,
            )?;
        }
        Command::Rm { id } => {
            lake.revoke_token(&id).await?;
            status(format!("Revoked token {id}"));
        }
    }
    Ok(())
}
