//! `basin`: the command line. Parses arguments, opens the lakehouse, calls the service and
//! prints: data on stdout, progress and errors (with a `hint:`) on stderr.

mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::*;

#[derive(Parser)]
#[command(
    name = "basin",
    version,
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
    #[arg(long, global = true, env = basin_service::config::env::HOME, value_name = "PATH")]
    home: Option<PathBuf>,

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
    /// Merge a branch into another in one commit
    Merge(merge::Args),
    /// List, create and drop namespaces
    #[command(subcommand, alias = "ns")]
    Namespace(namespace::Command),
    /// List, show, drop and revert tables
    #[command(subcommand)]
    Table(table::Command),
    /// Import CSV, JSON, Parquet or Arrow files into a table, as one commit
    Import(import::Args),
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
    /// Serve the lakehouse: HTTP API, Iceberg REST catalog, Postgres wire protocol, web console
    Serve(serve::Args),
    /// Create, list and revoke access tokens for `basin serve`
    #[command(subcommand)]
    Token(token::Command),
    /// List, build and remove cached function environments
    #[command(subcommand)]
    Env(env::Command),
    /// Run the guided tour: TPC-H data, a branch, a change, a diff, a merge, a query
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output::report_error(&e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let home = cli.home.as_deref();
    match cli.command {
        Command::Init(args) => init::run(args).await,
        Command::Branch(cmd) => branch::run(cmd, home).await,
        Command::Tag(cmd) => tag::run(cmd, home).await,
        Command::Checkout(args) => checkout::run(args, home).await,
        Command::Log(args) => log::run(args, home).await,
        Command::Diff(args) => diff::run(args, home).await,
        Command::Merge(args) => merge::run(args, home).await,
        Command::Namespace(cmd) => namespace::run(cmd, home).await,
        Command::Table(cmd) => table::run(cmd, home).await,
        Command::Import(args) => import::run(args, home).await,
        Command::Query(args) => query::run(args, home).await,
        Command::Invoke(args) => invoke::run(args, home).await,
        Command::Usage(args) => usage::run(args, home).await,
        Command::Run(args) => run::run(args, home).await,
        Command::Serve(args) => serve::run(args, home).await,
        Command::Token(cmd) => token::run(cmd, home).await,
        Command::Runs(cmd) => runs::run(cmd, home).await,
        Command::Env(cmd) => env::run(cmd, home).await,
        Command::Demo(args) => demo::run(args).await,
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
