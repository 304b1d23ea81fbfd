//! `basin lineage NS.TABLE`: where a table's rows came from and what is built from it.

use basin_service::{Direction, LineageGraph};

use crate::lake::Context;
use crate::output::{status, time};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Shown {
    /// One line per edge, for people
    Table,
    /// Nodes and edges, for scripts
    Json,
    /// A Graphviz graph: `basin lineage T --format dot | dot -Tsvg > lineage.svg`
    Dot,
}

#[derive(clap::Args)]
#[command(
    after_help = "Each commit that writes tables records who wrote them: an import's
files, a triggered function, a pipeline's model (with the tables it read) or a database
source. The ref's commits, with those its merges brought in, give the graph: each edge with
the newest commit that made it. Tables your token may not read are not on it.

Examples:
  basin lineage analytics.revenue               # both ways, 5 writers deep
  basin lineage tpch.orders --downstream        # what is built from it
  basin lineage analytics.revenue --ref dev --format dot | dot -Tsvg > lineage.svg"
)]
pub struct Args {
    /// The table (NAMESPACE.TABLE)
    table: String,
    /// The ref to read (default: the current branch)
    #[arg(long = "ref", value_name = "REF")]
    at: Option<String>,
    /// Only where its rows came from
    #[arg(long, conflicts_with = "downstream")]
    upstream: bool,
    /// Only what is built from it
    #[arg(long)]
    downstream: bool,
    /// How many writers deep each way (at most 20)
    #[arg(long, default_value_t = 5)]
    depth: usize,
    /// `table` for people, `json` for scripts, `dot` for Graphviz
    #[arg(long, value_enum, default_value_t = Shown::Table)]
    format: Shown,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let direction = match (args.upstream, args.downstream) {
        (true, _) => Direction::Upstream,
        (_, true) => Direction::Downstream,
        _ => Direction::Both,
    };
    let graph = ctx
        .open()
        .await?
        .lineage(&args.table, args.at.as_deref(), args.depth, direction)
        .await?;
    match args.format {
        Shown::Json => println!("{}", serde_json::to_string(&graph)?),
        Shown::Dot => print!("{}", dot(&graph)),
        Shown::Table if graph.edges.is_empty() => status(format!(
            "no lineage recorded for {} on `{}`: no commit on it says who wrote it",
            graph.table, graph.at
        )),
        Shown::Table => {
            for e in &graph.edges {
                println!(
                    "{}  ->  {}   ({} {})",
                    shown(&e.from),
                    shown(&e.to),
                    &e.commit[..12.min(e.commit.len())],
                    time(e.at_ms)
                );
            }
        }
    }
    Ok(())
}

/// A node's id for people: a table by its name, a writer as `KIND NAME`.
fn shown(id: &str) -> String {
    match id.split_once(':') {
        Some(("table", name)) => name.to_string(),
        Some((kind, name)) => format!("{kind} {name}"),
        None => id.to_string(),
    }
}

/// The graph in Graphviz's language: tables as boxes, writers as ellipses.
fn dot(graph: &LineageGraph) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = format!(
        "digraph lineage {{\n  rankdir=LR;\n  label={};\n",
        quote(&format!("lineage of {} on {}", graph.table, graph.at))
    );
    for n in &graph.nodes {
        let (shape, label) = match n.kind.as_str() {
            "table" => ("box", n.name.clone()),
            kind => ("ellipse", format!("{kind}\\n{}", n.name)),
        };
        let bold = if n.kind == "table" && n.name == graph.table {
            ", style=bold"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {} [shape={shape}, label={}{bold}];\n",
            quote(&n.id),
            quote(&label).replace("\\\\n", "\\n")
        ));
    }
    for e in &graph.edges {
        out.push_str(&format!(
            "  {} -> {} [tooltip={}];\n",
            quote(&e.from),
            quote(&e.to),
            quote(&e.commit)
        ));
    }
    out.push_str("}\n");
    out
}
