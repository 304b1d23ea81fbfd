use basin_catalog::Grant;
use basin_service::Role;

use crate::lake::Context;
use crate::output::{FormatArg, print, status, time};

#[derive(clap::Subcommand)]
#[command(
    after_help = "Tokens let clients use `basin serve` (Authorization: Bearer TOKEN). A reader reads
(refs, tables, queries, runs, usage); a writer also changes data; an admin also manages
tokens. Instead of a role, a token can hold grants: read or write on namespace/table
patterns, on branch patterns (`access:TABLES[@BRANCHES]`); what it may not read, it does not
see. [[grants]] in basin.toml adds grants to a token by its name. The secret is printed once;
Basin keeps only its SHA-256.

Examples:
  basin token create --role reader --name dashboards
  basin token create --name ana --grant read:sales.* --grant write:sandbox.*@dev/*
  basin token ls
  basin token rm 1a2b3c4d"
)]
pub enum Command {
    /// Create a token and print its secret (once)
    Create {
        /// reader, writer or admin
        #[arg(long, required_unless_present = "grants", conflicts_with = "grants")]
        role: Option<String>,
        /// read|write:TABLES[@BRANCHES] (comma-separated patterns, `*` for any run of
        /// characters), or admin; repeat for several
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        /// Its name, unique: who the token is ([[grants]] to = NAME, commit authors, the
        /// functions it deploys)
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
        Command::Create { role, name, grants } => {
            let role = role.as_deref().map(Role::parse).transpose()?;
            let grants = grants
                .iter()
                .map(|g| Grant::parse(g))
                .collect::<basin_core::Result<Vec<_>>>()?;
            let (token, secret) = lake.create_token(&name, role, &grants).await?;
            println!("{secret}");
            let what = if token.grants.is_empty() {
                format!("{} token", token.role)
            } else {
                format!("token ({})", token.grants.join(" "))
            };
            status(format!(
                "Created {what} {}; this is the only time its secret is shown",
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
                        t.grants.join(" "),
                        time(t.created_at_ms),
                    ]
                })
                .collect();
            print(
                format.format,
                &tokens,
                &["token", "role", "name", "grants", "created"],
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
