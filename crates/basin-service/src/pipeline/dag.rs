//! The models' DAG: inputs resolved to models or tables, checked, ordered.

use std::collections::{BTreeMap, BTreeSet};

use basin_core::{Error, Result};

use super::project::Project;

/// What an input resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Another model of the project (its index).
    Model(usize),
    /// A table on the target branch, `ns.table`.
    Table(String),
}

#[derive(Clone, Debug)]
pub struct Dag {
    /// Per model: per input, what it reads.
    pub inputs: Vec<Vec<Source>>,
    /// Models in an order where every model comes after its inputs.
    pub order: Vec<usize>,
}

impl Dag {
    /// Resolves every input (a bare name is a model of the project first, then a table of
    /// the project's namespace) against `tables` (the target's), and orders the models.
    /// A cycle, a missing input or two models producing one table is an error naming them.
    pub fn build(project: &Project, tables: &BTreeSet<String>, target: &str) -> Result<Self> {
        let mut producers: BTreeMap<String, usize> = BTreeMap::new();
        for (i, model) in project.models.iter().enumerate() {
            let table = format!("{}.{}", project.namespace, model.name);
            if let Some(&other) = producers.get(&table) {
                return Err(Error::invalid(format!(
                    "two models produce `{table}`: in {} and in {}",
                    project.models[other].file.display(),
                    model.file.display()
                ))
                .with_hint("rename one of them (@basin.model(name=...) or the .sql file's name)"));
            }
            producers.insert(table, i);
        }
        let mut inputs = Vec::with_capacity(project.models.len());
        for model in &project.models {
            let mut sources = Vec::new();
            for (_, input) in &model.inputs {
                let qualified = if input.name.contains('.') {
                    input.name.clone()
                } else {
                    format!("{}.{}", project.namespace, input.name)
                };
                let source = match producers.get(&qualified) {
                    Some(&i) => Source::Model(i),
                    None if tables.contains(&qualified) => Source::Table(qualified),
                    None => {
                        let names: Vec<&str> = project
                            .models
                            .iter()
                            .map(|m| m.name.as_str())
                            .chain(tables.iter().map(String::as_str))
                            .collect();
                        let hint = match basin_core::suggest(&input.name, names.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "models: {}; import the table first, or add the model",
                                project
                                    .models
                                    .iter()
                                    .map(|m| m.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        };
                        return Err(Error::not_found(format!(
                            "model `{}` ({}) reads `{}`, which is neither a model of the project nor a table on `{target}`",
                            model.name,
                            model.file.display(),
                            input.name
                        ))
                        .with_hint(hint));
                    }
                };
                sources.push(source);
            }
            inputs.push(sources);
        }
        let order = topological(project, &inputs)?;
        Ok(Self { inputs, order })
    }

    /// The models that read model `i`.
    pub fn children(&self, i: usize) -> Vec<usize> {
        (0..self.inputs.len())
            .filter(|&c| self.inputs[c].contains(&Source::Model(i)))
            .collect()
    }

    /// How many distinct models model `i` reads.
    pub fn upstream_count(&self, i: usize) -> usize {
        self.inputs[i]
            .iter()
            .filter_map(|s| match s {
                Source::Model(m) => Some(*m),
                Source::Table(_) => None,
            })
            .collect::<BTreeSet<_>>()
            .len()
    }
}

fn topological(project: &Project, inputs: &[Vec<Source>]) -> Result<Vec<usize>> {
    let n = inputs.len();
    let upstream: Vec<BTreeSet<usize>> = inputs
        .iter()
        .map(|s| {
            s.iter()
                .filter_map(|s| match s {
                    Source::Model(m) => Some(*m),
                    Source::Table(_) => None,
                })
                .collect()
        })
        .collect();
    let mut remaining: Vec<usize> = upstream.iter().map(BTreeSet::len).collect();
    let mut ready: Vec<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(i);
        for c in 0..n {
            if upstream[c].contains(&i) {
                remaining[c] -= 1;
                if remaining[c] == 0 {
                    ready.push(c);
                }
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk back from a model left over until a model repeats: that is a cycle.
    let start = (0..n)
        .find(|i| !order.contains(i))
        .expect("a model is left");
    let mut path = vec![start];
    let mut at = start;
    loop {
        at = *upstream[at]
            .iter()
            .find(|u| !order.contains(u))
            .expect("a left-over input");
        if let Some(pos) = path.iter().position(|&p| p == at) {
            let mut cycle: Vec<&str> = path[pos..]
                .iter()
                .rev()
                .map(|&i| project.models[i].name.as_str())
                .collect();
            cycle.push(cycle[0]);
            return Err(
                Error::invalid(format!("the models form a cycle: {}", cycle.join(" -> ")))
                    .with_hint("a model cannot read its own output, directly or through others"),
            );
        }
        path.push(at);
    }
}
