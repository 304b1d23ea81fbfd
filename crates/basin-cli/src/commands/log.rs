use basin_catalog::CommitId;
use basin_service::GraphEntry;

use crate::lake::Context;
use crate::output::{FormatArg, ListFormat, print, time};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  basin log                    # the current branch's commits, newest first
  basin log dev -n 5           # another branch's last five
  basin log --graph            # every branch and tag as a commit graph, with merges
  basin log --graph --runs     # with pipeline runs' branches (run/ID) too")]
pub struct Args {
    /// A branch, tag or REF@COMMIT (default: the current branch)
    #[arg(value_name = "REF")]
    at: Option<String>,
    /// How many commits to show
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    /// Draw every branch and tag as a commit graph (as `git log --graph --all`)
    #[arg(long, conflicts_with = "at")]
    graph: bool,
    /// With --graph: pipeline runs' branches (`run/ID`) too, which are left out
    #[arg(long, requires = "graph")]
    runs: bool,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    if args.graph {
        let entries = lake.graph(args.limit, args.runs).await?;
        return show_graph(&entries, args.format.format);
    }
    let entries = lake.log(args.at.as_deref(), args.limit).await?;
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                e.id.short().to_string(),
                time(e.created_at_ms),
                e.author.clone(),
                e.door.clone().unwrap_or_default(),
                e.message.clone(),
                e.changed.join(", "),
            ]
        })
        .collect();
    print(
        args.format.format,
        &entries,
        &["commit", "time", "author", "door", "message", "changed"],
        rows,
    )?;
    if let Some(cut) = entries.last().and_then(|e| e.history_cut.as_ref())
        && args.format.format == ListFormat::Table
    {
        println!(
            "history before {} was removed on {} ({})",
            cut.commit.short(),
            time(cut.removed_at_ms),
            cut.note
        );
    }
    Ok(())
}

/// The graph as lines: each commit's row (`*` in its lane, `|` in the others, then its id,
/// refs and message), with `|/` where two lines meet at a parent and `|\` where a merge
/// brings a second parent in. JSON gives each commit with its lane (`column`).
pub(crate) fn show_graph(entries: &[GraphEntry], format: ListFormat) -> anyhow::Result<()> {
    let drawn = lanes(entries);
    if format == ListFormat::Json {
        let rows: Vec<serde_json::Value> = entries
            .iter()
            .zip(&drawn)
            .map(|(e, d)| {
                let mut row = serde_json::to_value(e).unwrap_or_default();
                row["column"] = d.column.into();
                row
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    for (entry, row) in entries.iter().zip(drawn) {
        for line in row.before {
            println!("{}", line.trim_end());
        }
        let refs = match entry.refs.as_slice() {
            [] => String::new(),
            names => format!(" ({})", names.join(", ")),
        };
        let merges = row
            .merges
            .as_ref()
            .map(|m| format!(" [merges {}]", m.short()))
            .unwrap_or_default();
        println!(
            "{} {}{refs} {}{merges}",
            row.line,
            entry.commit.id.short(),
            entry.commit.message
        );
        for line in row.after {
            println!("{}", line.trim_end());
        }
    }
    Ok(())
}

/// How one commit is drawn: its lane, the lines before its row (lanes meeting), its row's
/// lanes, the lines after (a merge's second parent starting a lane), and the merged parent
/// when another lane already waits for it (no line drawn to it: the row names it).
struct Drawn {
    column: usize,
    before: Vec<String>,
    line: String,
    after: Vec<String>,
    merges: Option<CommitId>,
}

/// Lanes as `git log --graph` keeps them: each lane waits for one commit; a commit takes the
/// leftmost lane waiting for it (or a free one), the others waiting for it end there, and
/// its lane then waits for its first parent, a new lane for a merged parent not yet awaited.
fn lanes(entries: &[GraphEntry]) -> Vec<Drawn> {
    let mut lanes: Vec<Option<CommitId>> = Vec::new();
    let mut drawn = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = &entry.commit.id;
        let waiting: Vec<usize> = (0..lanes.len())
            .filter(|&i| lanes[i].as_ref() == Some(id))
            .collect();
        let column = match waiting.first() {
            Some(&i) => i,
            None => free_lane(&mut lanes, 0),
        };
        let mut before = Vec::new();
        if waiting.len() > 1 {
            let ending = &waiting[1..];
            for &i in ending {
                lanes[i] = None;
            }
            before.push(draw(&lanes, None, ending, '/'));
        }
        lanes[column] = Some(id.clone());
        let line = draw(&lanes, Some(column), &[], ' ');
        lanes[column] = entry.commit.parent.clone();
        let mut after = Vec::new();
        let mut merges = None;
        if let Some(merged) = &entry.commit.merge_parent {
            if lanes.contains(&Some(merged.clone())) {
                merges = Some(merged.clone());
            } else {
                let lane = free_lane(&mut lanes, column + 1);
                after.push(draw(&lanes, None, &[lane], '\\'));
                lanes[lane] = Some(merged.clone());
            }
        }
        while lanes.last().is_some_and(Option::is_none) {
            lanes.pop();
        }
        drawn.push(Drawn {
            column,
            before,
            line,
            after,
            merges,
        });
    }
    drawn
}

/// The first free lane at or after `from`, a new one if none.
fn free_lane(lanes: &mut Vec<Option<CommitId>>, from: usize) -> usize {
    match (from..lanes.len()).find(|&i| lanes[i].is_none()) {
        Some(i) => i,
        None => {
            lanes.push(None);
            lanes.len() - 1
        }
    }
}

/// One line of lanes: `|` for each waiting lane, `*` at `commit`'s, and `edge` (`/` or `\`)
/// just left of each lane in `edges` (a lane ending into, or starting from, its neighbour).
fn draw(lanes: &[Option<CommitId>], commit: Option<usize>, edges: &[usize], edge: char) -> String {
    let width = lanes
        .len()
        .max(edges.iter().map(|e| e + 1).max().unwrap_or(0));
    let mut line = vec![' '; width * 2];
    for (i, lane) in lanes.iter().enumerate() {
        if lane.is_some() {
            line[2 * i] = '|';
        }
    }
    if let Some(i) = commit {
        line[2 * i] = '*';
    }
    for &i in edges {
        line[2 * i] = ' ';
        line[(2 * i).saturating_sub(1)] = edge;
    }
    line.into_iter().collect::<String>().trim_end().to_string()
}
