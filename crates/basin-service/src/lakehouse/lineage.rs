//! A table's lineage on a ref (`basin lineage`, `GET /api/v1/lineage`): where its rows came
//! from and what is built from it. Each commit that writes tables says who wrote them and
//! what that read (`basin_table::lineage::Writer`: an import's files, a function, a
//! pipeline's model and its inputs, a database source); the ref's commits, with those its
//! merges brought in, give a graph of tables and writers, each edge with the newest commit
//! that made it. Read through the caller's grants: a table it may not read is not on it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use basin_catalog::{CommitId, Content, Operation, Resolved};
use basin_core::{Error, ErrorKind, Result};
use basin_table::lineage::Writer;
use serde::{Deserialize, Serialize};

use crate::Lakehouse;

/// The most commits read for one lineage, newest first.
const MOST_COMMITS: usize = 5000;
/// The deepest a lineage goes, in writers between two tables.
pub const MAX_DEPTH: usize = 20;

/// Which way from the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Where its rows came from.
    Upstream,
    /// What is built from it.
    Downstream,
    #[default]
    Both,
}

/// A table or a writer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LineageNode {
    /// `table:ns.t`, or the writer's `KIND:NAME`.
    pub id: String,
    /// `table`, `import`, `function`, `model` or `source`.
    pub kind: String,
    pub name: String,
}

/// A writer wrote a table, or a table was read by a writer; with the newest commit that did.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LineageEdge {
    pub from: String,
    pub to: String,
    pub commit: String,
    pub at_ms: i64,
}

/// The lineage of `table` on `at`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LineageGraph {
    pub table: String,
    #[serde(rename = "ref")]
    pub at: String,
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdge>,
}

/// Lineage: see [`Lineage::of`]. A handle borrowing the lakehouse: [`Lakehouse::lineage`].
#[derive(Clone, Copy)]
pub struct Lineage<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Tables' lineage: see [`Lineage`].
    pub fn lineage(&self) -> Lineage<'_> {
        Lineage { lake: self }
    }
}

impl Lineage<'_> {
    /// The lineage of `table` on `at` (default: the current branch), `depth` writers deep
    /// each way `direction` asks.
    pub async fn of(
        &self,
        table: &str,
        at: Option<&str>,
        depth: usize,
        direction: Direction,
    ) -> Result<LineageGraph> {
        let start = self.lake.resolve(at).await?;
        let visible: BTreeSet<String> = self
            .lake
            .tables()
            .list(Some(&start.spec))
            .await?
            .into_iter()
            .map(|t| t.table)
            .collect();
        if !visible.contains(table) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("table `{table}` does not exist on `{}`", start.spec),
            )
            .with_hint("`basin table ls` lists the tables of a ref"));
        }
        let edges = self.edges(&start, &visible).await?;
        let kept = reach(
            &edges,
            &format!("table:{table}"),
            depth.min(MAX_DEPTH),
            direction,
        );
        let edges: Vec<LineageEdge> = edges
            .into_values()
            .filter(|e| kept.contains(&e.from) && kept.contains(&e.to))
            .collect();
        let nodes = kept.iter().map(|id| node(id)).collect();
        Ok(LineageGraph {
            table: table.to_string(),
            at: start.spec,
            nodes,
            edges,
        })
    }

    /// Every edge the commits of `start` (and those its merges brought in) record, the
    /// newest commit of each; tables outside `visible` left out.
    async fn edges(
        &self,
        start: &Resolved,
        visible: &BTreeSet<String>,
    ) -> Result<BTreeMap<(String, String), LineageEdge>> {
        let catalog = self.lake.catalog();
        let mut edges: BTreeMap<(String, String), LineageEdge> = BTreeMap::new();
        let mut add = |from: String, to: String, commit: &CommitId, at_ms: i64| {
            let edge = edges
                .entry((from.clone(), to.clone()))
                .or_insert(LineageEdge {
                    from,
                    to,
                    commit: commit.to_string(),
                    at_ms,
                });
            if at_ms > edge.at_ms {
                edge.commit = commit.to_string();
                edge.at_ms = at_ms;
            }
        };
        let mut seen: HashSet<CommitId> = HashSet::new();
        let mut tips = vec![start.commit.clone()];
        while let Some(head) = tips.pop() {
            if seen.contains(&head) || seen.len() >= MOST_COMMITS {
                continue;
            }
            let line = Resolved {
                commit: head,
                ..start.clone()
            };
            for commit in catalog.log(&line, MOST_COMMITS - seen.len()).await? {
                if !seen.insert(commit.id.clone()) {
                    break;
                }
                tips.extend(commit.merge_parent.clone());
                let Some(writer) = Writer::of(&commit.properties) else {
                    continue;
                };
                let id = format!("{}:{}", writer.kind, writer.name);
                for op in &commit.operations {
                    if let Operation::Put {
                        key,
                        content: Content::Table { .. },
                    } = op
                        && visible.contains(key.as_str())
                    {
                        let to = format!("table:{}", key.as_str());
                        add(id.clone(), to, &commit.id, commit.created_at_ms);
                    }
                }
                for read in writer.reads.iter().filter(|r| visible.contains(*r)) {
                    let from = format!("table:{read}");
                    add(from, id.clone(), &commit.id, commit.created_at_ms);
                }
            }
        }
        Ok(edges)
    }
}

/// The nodes within `depth` writers of `start`, each way `direction` asks.
fn reach(
    edges: &BTreeMap<(String, String), LineageEdge>,
    start: &str,
    depth: usize,
    direction: Direction,
) -> BTreeSet<String> {
    let mut kept = BTreeSet::from([start.to_string()]);
    let ways = match direction {
        Direction::Upstream => vec![true],
        Direction::Downstream => vec![false],
        Direction::Both => vec![true, false],
    };
    for upstream in ways {
        let mut reached = BTreeSet::from([start.to_string()]);
        let mut frontier = vec![start.to_string()];
        // Each round goes one step further: table -> writer -> table.
        for _ in 0..depth * 2 {
            let next: Vec<String> = edges
                .keys()
                .filter_map(|(from, to)| match upstream {
                    true if frontier.contains(to) => Some(from.clone()),
                    false if frontier.contains(from) => Some(to.clone()),
                    _ => None,
                })
                .filter(|n| reached.insert(n.clone()))
                .collect();
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        kept.extend(reached);
    }
    kept
}

fn node(id: &str) -> LineageNode {
    let (kind, name) = id.split_once(':').unwrap_or(("table", id));
    LineageNode {
        id: id.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
    }
}
