use basin_service::sources::{DEFAULT_READERS, SourceConfig, SourceMode};

use crate::lake::Context;
use crate::output::{FormatArg, print, status};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Declare a database to ingest from, as [sources.NAME] in basin.toml
    #[command(after_help = "Examples:
  basin source add shop --url postgres://basin@db.internal:5432/shop --password-env SHOP_PASSWORD \\
      --tables public.orders,public.customers --namespace shop
  basin source add crm --url postgres://reader@localhost/crm --schema public

The password never goes into basin.toml: name the environment variable that holds it.")]
    Add {
        name: String,
        /// postgres://USER@HOST:PORT/DATABASE (no password)
        #[arg(long)]
        url: String,
        /// The environment variable that holds the user's password
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// Tables to load, as SCHEMA.TABLE (comma-separated or repeated)
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "SCHEMA.TABLE",
            conflicts_with = "schema"
        )]
        tables: Vec<String>,
        /// Load every table of this schema instead
        #[arg(long)]
        schema: Option<String>,
        /// The Basin namespace the tables go to (default: the source's name)
        #[arg(long)]
        namespace: Option<String>,
        /// The branch `basin ingest` commits to (default: main)
        #[arg(long)]
        branch: Option<String>,
        /// Connections reading in parallel
        #[arg(long, default_value_t = DEFAULT_READERS)]
        readers: usize,
        /// `snapshot`: a full load each `basin ingest` (`cdc` is not built yet)
        #[arg(long, value_enum, default_value_t = ModeArg::Snapshot)]
        mode: ModeArg,
    },
    /// List the declared sources
    Ls {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Remove a source from basin.toml (its tables stay)
    Rm { name: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Snapshot,
    Cdc,
}

pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    let lake = crate::commands::open(ctx.home("source")?).await?;
    match cmd {
        Command::Add {
            name,
            url,
            password_env,
            tables,
            schema,
            namespace,
            branch,
            readers,
            mode,
        } => {
            // The same checks as a hand-written [sources.NAME].
            let section = basin_service::sources::SourceSection {
                url: Some(url),
                password_env,
                tables: Some(tables),
                schema,
                namespace,
                mode: Some(
                    match mode {
                        ModeArg::Snapshot => "snapshot",
                        ModeArg::Cdc => "cdc",
                    }
                    .to_string(),
                ),
                branch,
                readers: Some(readers),
            };
            let file = lake.root().join("basin.toml");
            let source = SourceConfig::from_section(&name, &section, &file)?;
            lake.add_source(&source)?;
            status(format!(
                "Added source `{name}` to {} (load it with `basin ingest {name}`)",
                file.display()
            ));
            Ok(())
        }
        Command::Ls { format } => {
            let sources = lake.sources();
            let rows = sources
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.url.clone(),
                        match &s.schema {
                            Some(schema) => format!("{schema}.*"),
                            None => s.tables.join(", "),
                        },
                        s.namespace.clone(),
                        match s.mode {
                            SourceMode::Snapshot => "snapshot".into(),
                            SourceMode::Cdc => "cdc".into(),
                        },
                        s.branch.clone().unwrap_or_else(|| "main".into()),
                    ]
                })
                .collect();
            print(
                format.format,
                &sources,
                &["source", "url", "tables", "namespace", "mode", "branch"],
                rows,
            )
        }
        Command::Rm { name } => {
            let source = lake.remove_source(&name)?;
            status(format!(
                "Removed source `{name}` from basin.toml (the tables in `{}` stay)",
                source.namespace
            ));
            Ok(())
        }
    }
}
