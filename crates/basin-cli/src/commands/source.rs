use basin_service::config::{DEFAULT_READERS, SourceConfig, SourceMode};

use crate::lake::Context;
use basin_service::Lakehouse;
use basin_service::sources::cdc::SourceStatus;

use crate::output::{FormatArg, print, status};

// Parsed once per run: the size of `Add` costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand)]
pub enum Command {
    /// Declare a database to ingest from, as [sources.NAME] in basin.toml
    #[command(after_help = "Examples:
  basin source add shop --url postgres://basin@db.internal:5432/shop --password-env SHOP_PASSWORD \\
      --tables public.orders,public.customers --namespace shop
  basin source add crm --url postgres://reader@localhost/crm --schema public
  basin source add orders --url mysql://basin@mysql.internal:3306/shop --password-env SHOP_PW \\
      --schema shop                       # MySQL or MariaDB: full loads (no cdc yet)

The password never goes into basin.toml: name the environment variable that holds it.")]
    Add {
        name: String,
        /// postgres://, mysql:// or mariadb://USER@HOST:PORT/DATABASE (no password)
        #[arg(long)]
        url: String,
        /// The environment variable that holds the user's password
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// Tables to load, as SCHEMA.TABLE (MySQL: DATABASE.TABLE; comma-separated or repeated)
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "SCHEMA.TABLE",
            conflicts_with = "schema"
        )]
        tables: Vec<String>,
        /// Load every table of this schema (MySQL: database) instead
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
        /// `snapshot`: a full load each `basin ingest`; `cdc`: a full load, then changes
        /// streamed from a replication slot (`basin ingest --follow`, `basin serve`)
        #[arg(long, value_enum, default_value_t = ModeArg::Snapshot)]
        mode: ModeArg,
        /// CDC: the publication to stream, created at the source (default: basin)
        #[arg(long)]
        publication: Option<String>,
        /// CDC: commit a batch once it holds this many changes (whole transactions)
        #[arg(long)]
        batch_rows: Option<usize>,
        /// CDC: commit a batch once its first transaction waited this long
        #[arg(long)]
        batch_seconds: Option<f64>,
    },
    /// List the declared sources; for CDC sources, their slot, position and lag
    #[command(
        after_help = "For a `mode = \"cdc\"` source, ls asks the server about its slot: the last LSN
the tables hold and when Basin committed it, the WAL bytes the slot has not had confirmed
(`pg_current_wal_lsn() - confirmed_flush_lsn`) and, when changes wait, how long ago the last
one applied was committed at the source. For a MySQL source: the binary log position the
tables hold, the bytes the server's log is past it (when in the same file) and, while it is
past it, how long ago the last transaction applied committed at the source."
    )]
    Ls {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Remove a source from basin.toml (its tables stay) and drop the slot Basin created
    #[command(
        after_help = "A replication slot keeps WAL on the server until it is dropped, so rm drops
the slot Basin created for the source (`basin_NAME`), and says so. --keep-slot leaves it."
    )]
    Rm {
        name: String,
        /// Leave the source's replication slot on the server
        #[arg(long)]
        keep_slot: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Snapshot,
    Cdc,
}

pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    let lake = crate::lake::open_local(ctx.home("source")?).await?;
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
            publication,
            batch_rows,
            batch_seconds,
        } => {
            // The same checks as a hand-written [sources.NAME].
            let section = basin_service::config::SourceSection {
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
                publication,
                batch_rows,
                batch_seconds,
                max_transaction_changes: None,
            };
            let file = lake.root().join("basin.toml");
            let source = SourceConfig::from_section(&name, &section, &file)?;
            lake.sources().add(&source)?;
            status(format!(
                "Added source `{name}` to {} (load it with `basin ingest {name}`)",
                file.display()
            ));
            Ok(())
        }
        Command::Ls { format } => list(&lake, format).await,
        Command::Rm { name, keep_slot } => {
            let (source, dropped) = lake.sources().remove(&name, keep_slot).await?;
            let slot = basin_ingest::postgres::cdc::slot::slot_name(&name);
            let slot_note = if dropped {
                format!("; dropped its replication slot `{slot}`")
            } else if keep_slot {
                format!("; its replication slot `{slot}`, if any, stays on the server")
            } else {
                String::new()
            };
            status(format!(
                "Removed source `{name}` from basin.toml (the tables in `{}` stay){slot_note}",
                source.namespace
            ));
            Ok(())
        }
    }
}

/// `basin source ls`: each source's settings and, for CDC, how far its tables are.
async fn list(lake: &Lakehouse, format: FormatArg) -> anyhow::Result<()> {
    let sources = lake.sources().list();
    let mut listed = Vec::with_capacity(sources.len());
    for source in sources {
        let state = if source.mode == SourceMode::Cdc {
            match lake.sources().status(&source).await {
                Ok(status) => status,
                Err(e) => SourceStatus {
                    error: Some(e.to_string()),
                    ..Default::default()
                },
            }
        } else {
            SourceStatus::default()
        };
        if let Some(error) = &state.error {
            status(format!("warning: source `{}`: {error}", source.name));
        }
        listed.push(Listed {
            source,
            status: state,
        });
    }
    let dash = || "-".to_string();
    let rows = listed
        .iter()
        .map(|Listed { source: s, status }| {
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
                status.slot.clone().unwrap_or_else(dash),
                status.lsn.clone().unwrap_or_else(dash),
                status.last_commit.clone().unwrap_or_else(dash),
                status.lag_bytes.map_or_else(dash, |b| b.to_string()),
                status.lag_seconds.map_or_else(dash, |s| format!("{s:.1}")),
            ]
        })
        .collect();
    print(
        format.format,
        &listed,
        &[
            "source",
            "url",
            "tables",
            "namespace",
            "mode",
            "branch",
            "slot",
            "position",
            "last commit",
            "lag bytes",
            "lag s",
        ],
        rows,
    )
}

/// A source as `source ls --format json` prints it: its settings and, for CDC, its status.
#[derive(serde::Serialize)]
struct Listed {
    #[serde(flatten)]
    source: SourceConfig,
    #[serde(flatten)]
    status: SourceStatus,
}
