//! `basin`: the command line. Parses arguments, opens the lakehouse, calls the service and
//! prints: data on stdout, progress and errors (with a `hint:`) on stderr.

mod commands;
mod lake;
mod output;
mod remote;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::commands::*;

/// mimalloc instead of the system allocator: TPC-H and the shared-memory handoff measured
/// with both (docs/benchmarks/build.md, issue #18). `basin serve` and `basin worker` run
/// without transparent huge pages ([`no_huge_pages`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The help section of the options every command takes.
const GLOBAL: &str = "Global options";

/// `basin --version`: the version, and the parts a build without default features left out.
const LONG_VERSION: &str = match (cfg!(feature = "cluster"), cfg!(feature = "postgres-wire")) {
    (true, true) => env!("CARGO_PKG_VERSION"),
    (false, true) => concat!(
        env!("CARGO_PKG_VERSION"),
        "\nleft out of this build: distributed SQL (feature `cluster`)"
    ),
    (true, false) => concat!(
        env!("CARGO_PKG_VERSION"),
        "\nleft out of this build: the Postgres door (feature `postgres-wire`)"
    ),
    (false, false) => concat!(
        env!("CARGO_PKG_VERSION"),
        "\nleft out of this build: distributed SQL (feature `cluster`), the Postgres door \
         (feature `postgres-wire`)"
    ),
};

#[derive(Parser)]
#[command(
    name = "basin",
    version,
    long_version = LONG_VERSION,
    about = "A serverless data lakehouse: Iceberg tables under a git-like catalog, queried with SQL",
    long_about = "Basin keeps Apache Iceberg tables under a versioned catalog with branches, tags, \
merges and time travel, runs SQL over any branch or past commit, and runs Python and SQL \
functions and pipelines next to the data, in cached environments and confined workers.\n\n\
A lakehouse is a folder: `basin init` creates `.basin/` (a SQLite catalog and the data), and \
every other command finds it like git finds a repository.",
    after_help = "Start here:\n  basin demo                        # a guided tour on TPC-H data\n  basin init && basin import orders.csv --table sales.orders\n  basin query \"SELECT count(*) FROM sales.orders\"\n  basin branch create dev && basin checkout dev\n  basin invoke clean.py:top_orders   # a Python function, next to the data\n  basin init --project shop && cd shop && basin run   # a pipeline, merged in one commit"
)]
struct Cli {
    /// The lakehouse folder (default: the nearest folder holding `.basin/`, walking up)
    #[arg(long, global = true, env = basin_service::config::env::HOME, value_name = "PATH", help_heading = GLOBAL)]
    home: Option<PathBuf>,

    /// Work on the lakehouse a `basin serve` at URL serves (e.g. http://10.0.0.5:8181),
    /// through its HTTP API; a ref or branch left out then means the server's `main`
    #[arg(long, global = true, env = "BASIN_REMOTE", value_name = "URL", help_heading = GLOBAL)]
    remote: Option<String>,

    /// The access token for --remote (create one with `basin token create`)
    #[arg(
        long,
        global = true,
        env = "BASIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = GLOBAL
    )]
    token: Option<String>,

    /// A certificate (PEM) to trust for an https --remote, besides the system's: the one a
    /// server with a self-signed certificate serves (`[server] tls_cert`)
    #[arg(long, global = true, env = "BASIN_CA_CERT", value_name = "PEM", help_heading = GLOBAL)]
    ca_cert: Option<PathBuf>,

    /// Write to protected branches directly and merge into them without their checks and
    /// approvals (an admin's token with --remote); each commit records it
    #[arg(long, global = true, help_heading = GLOBAL)]
    bypass_protection: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a lakehouse in DIR (default: the current folder)
    Init(init::Args),
    /// List, create and delete branches
    #[command(subcommand)]
    Branch(branch::Command),
    /// List, create and delete tags (fixed names for commits)
    #[command(subcommand)]
    Tag(tag::Command),
    /// Make a branch the one commands use by default
    Checkout(checkout::Args),
    /// Show the commits of a ref, newest first
    Log(log::Args),
    /// Show the tables added, changed and dropped between two refs
    Diff(diff::Args),
    /// Show where a table's rows came from and what is built from it
    Lineage(lineage::Args),
    /// Merge a branch into another in one commit
    Merge(merge::Args),
    /// Propose a merge into a protected branch, approve it, merge it
    #[command(subcommand)]
    Review(review::Command),
    /// List, create and drop namespaces
    #[command(subcommand, alias = "ns")]
    Namespace(namespace::Command),
    /// List, show, drop and revert tables
    #[command(subcommand)]
    Table(table::Command),
    /// Import CSV, JSON, Parquet or Arrow files into a table, as one commit
    Import(import::Args),
    /// Load a database source's tables (Postgres) in one commit, or stream their changes: `basin ingest shop [--follow]`
    Ingest(ingest::Args),
    /// Add, list and remove database sources ([sources.NAME] in basin.toml)
    #[command(subcommand, alias = "sources")]
    Source(source::Command),
    /// Run SQL over the tables of a branch, tag or commit
    Query(query::Args),
    /// Run one Python function (or protocol program) on the lakehouse's tables
    Invoke(invoke::Args),
    /// Run a project's pipeline on a run branch and merge it into the target
    Run(run::Args),
    /// List and show pipeline runs, with their models and logs
    #[command(subcommand)]
    Runs(runs::Command),
    /// Show invocations, GB-seconds and what they would cost on AWS Lambda
    Usage(usage::Args),
    /// Show what `basin apply` would change to make the lakehouse as basin.toml declares it
    Plan(plan::Args),
    /// Make the lakehouse as basin.toml declares it (namespaces, tables, branches, tags, tokens, functions)
    Apply(apply::Args),
    /// Write the lakehouse as a declaration, for basin.toml
    Export(export::Args),
    /// Deploy the triggered functions of a folder (`--plan` shows what would change)
    Deploy(deploy::Args),
    /// List, show and remove deployed functions
    #[command(subcommand)]
    Functions(functions::Command),
    /// List, show and retry the events triggered functions handle
    #[command(subcommand)]
    Events(events::Command),
    /// Upload a file into a bucket, where it triggers the functions watching it
    Put(put::Args),
    /// Serve the lakehouse: HTTP API, Iceberg REST catalog, Postgres wire protocol, web console
    Serve(serve::Args),
    /// Serve the lakehouse to an AI agent as a Model Context Protocol server on stdin/stdout
    Mcp(mcp::Args),
    /// Run triggered functions for a lakehouse with a shared catalog (a node of a cluster)
    Worker(worker::Args),
    /// Create, list and revoke access tokens for `basin serve`
    #[command(subcommand)]
    Token(token::Command),
    /// Who changed what, and what was refused: the audit log
    #[command(subcommand)]
    Audit(audit::Command),
    /// List, build and remove cached function environments
    #[command(subcommand)]
    Env(env::Command),
    /// Run the guided tour: TPC-H data, a branch, a change, a diff, a merge, a query
    Demo(demo::Args),
    /// Show the walls functions run inside on this machine, and the limits
    Doctor(doctor::Args),
    /// Delete the warehouse files no commit reads (left by failed or killed writes)
    Gc(gc::Args),
    /// Run maintenance now (compaction, expiry, gc) and list past runs; basin serve runs it
    /// nightly
    #[command(subcommand)]
    Maintenance(maintenance::Command),
    /// Print shell completions for bash, zsh, fish, elvish or powershell
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one page per command into a folder
    Man(completions::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        commands::log_to_stderr();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(basin_sql::RUNTIME_STACK)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let work = async {
        if cli.bypass_protection && cli.remote.is_none() {
            let mut actor = basin_catalog::actor::Actor::local();
            actor.bypass_protection = true;
            basin_catalog::actor::scope(actor, run(cli)).await
        } else {
            run(cli).await
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output::report_error(&e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = lake::Context {
        home: cli.home,
        remote: cli.remote,
        token: cli.token,
        ca_cert: cli.ca_cert,
        bypass_protection: cli.bypass_protection,
    };
    let ctx = &ctx;
    match cli.command {
        Command::Init(args) => init::run(args, ctx.home("init")?).await,
        Command::Branch(cmd) => branch::run(cmd, ctx).await,
        Command::Tag(cmd) => tag::run(cmd, ctx).await,
        Command::Checkout(args) => checkout::run(args, ctx.home("checkout")?).await,
        Command::Log(args) => log::run(args, ctx).await,
        Command::Lineage(args) => lineage::run(args, ctx).await,
        Command::Plan(args) => plan::run(args, ctx).await,
        Command::Apply(args) => apply::run(args, ctx).await,
        Command::Export(args) => export::run(args, ctx).await,
        Command::Diff(args) => diff::run(args, ctx.home("diff")?).await,
        Command::Merge(args) => merge::run(args, ctx).await,
        Command::Review(cmd) => review::run(cmd, ctx).await,
        Command::Namespace(cmd) => namespace::run(cmd, ctx).await,
        Command::Table(cmd) => table::run(cmd, ctx).await,
        Command::Import(args) => import::run(args, ctx).await,
        Command::Ingest(args) => ingest::run(args, ctx).await,
        Command::Source(cmd) => source::run(cmd, ctx).await,
        Command::Query(args) => query::run(args, ctx).await,
        Command::Invoke(args) => invoke::run(args, ctx.home("invoke")?).await,
        Command::Usage(args) => usage::run(args, ctx).await,
        Command::Deploy(args) => deploy::run(args, ctx).await,
        Command::Functions(cmd) => functions::run(cmd, ctx.home("functions")?).await,
        Command::Events(cmd) => events::run(cmd, ctx.home("events")?).await,
        Command::Put(args) => put::run(args, ctx.home("put")?).await,
        Command::Run(args) => run::run(args, ctx).await,
        Command::Serve(args) => {
            no_huge_pages();
            serve::run(args, ctx.home("serve")?).await
        }
        Command::Mcp(args) => mcp::run(args, ctx).await,
        Command::Worker(args) => {
            no_huge_pages();
            worker::run(args, ctx.home("worker")?).await
        }
        Command::Token(cmd) => token::run(cmd, ctx).await,
        Command::Audit(cmd) => audit::run(cmd, ctx).await,
        Command::Runs(cmd) => runs::run(cmd, ctx).await,
        Command::Env(cmd) => env::run(cmd, ctx.home("env")?).await,
        Command::Doctor(args) => doctor::run(args, ctx.home("doctor")?).await,
        Command::Gc(args) => gc::run(args, ctx.home("gc")?).await,
        Command::Maintenance(cmd) => maintenance::run(cmd, ctx.home("maintenance")?).await,
        Command::Completions(args) => completions::completions(args, Cli::command()),
        Command::Man(args) => completions::man(args, Cli::command()),
        Command::Demo(args) => {
            ctx.home("demo")?;
            demo::run(args).await
        }
    }
}

/// A long-running process (`basin serve`, `basin worker`) keeps from here on to the kernel's
/// 4 KiB pages. mimalloc asks for transparent huge pages, and where THP's `defrag` is
/// `madvise` (the kernel's default) each first touch of a 2 MiB page compacts memory and
/// zeroes all of it, every time a query's memory comes back from the kernel: up to half of
/// TPC-H SF10's CPU through `basin serve`, 1.38-1.40x DuckDB with huge pages against
/// 1.22-1.28x without (docs/benchmarks.md). A one-shot `basin query` keeps them: there the
/// fewer page faults won (about 8% at SF1). The processes a server starts (functions'
/// workers) inherit the choice. `MIMALLOC_ALLOW_THP` set keeps huge pages everywhere.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        // SAFETY: PR_SET_THP_DISABLE reads integer arguments (unsigned longs, as passed) and
        // touches no memory of ours. It fails only on kernels older than 3.15, which keep
        // their huge pages: nothing to do then.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused) };
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
