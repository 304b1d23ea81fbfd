//! Working out a plan: the declaration, the lakehouse as it is, and the state the last apply
//! left, compared object by object. Namespaces and tables here; refs, tokens and functions
//! in `others.rs`.

use std::collections::BTreeMap;

use basin_catalog::{Content, Key, Operation};
use basin_core::{Error, Result};
use serde_json::Value;

use super::plan::{Action, Change, Kind, Plan, State, Work};
use super::spec::{Declaration, in_section};
use super::table::{TableWork, observed};
use crate::Lakehouse;

pub(crate) struct Planner<'a> {
    pub lake: &'a Lakehouse,
    pub branch: String,
    /// The state of the last apply to this branch.
    pub state: State,
    pub contents: BTreeMap<Key, Content>,
    pub changes: Vec<Change>,
    pub drift: Vec<String>,
    pub work: Work,
    /// The declared objects as they are now.
    pub observed: State,
}

/// The plan for `declaration`, with its namespaces and tables on `branch`.
pub(crate) async fn plan(
    lake: &Lakehouse,
    declaration: &Declaration,
    branch: Option<&str>,
) -> Result<Plan> {
    let (planner, observed) = run(lake, declaration, branch).await?;
    let Planner {
        branch,
        changes,
        drift,
        mut work,
        ..
    } = planner;
    work.observed = observed;
    Ok(Plan {
        branch,
        file: declaration.origin.clone(),
        changes,
        drift,
        applied: false,
        commit: None,
        tokens: Vec::new(),
        work,
    })
}

async fn run<'a>(
    lake: &'a Lakehouse,
    declaration: &Declaration,
    branch: Option<&str>,
) -> Result<(Planner<'a>, State)> {
    let at = lake.resolve(branch).await?;
    let branch = at.writable_branch()?.to_string();
    let state = super::state::read(lake, &branch).await?;
    let contents = lake.catalog().contents(&at).await?;
    let mut planner = Planner {
        lake,
        work: Work {
            head: Some(at.commit.clone()),
            ..Work::default()
        },
        branch,
        state,
        contents,
        changes: Vec::new(),
        drift: Vec::new(),
        observed: State::new(),
    };
    planner.namespaces(declaration)?;
    planner.tables(declaration).await?;
    planner.refs(declaration).await?;
    planner.tokens(declaration).await?;
    planner.functions(declaration).await?;
    let observed = std::mem::take(&mut planner.observed);
    Ok((planner, observed))
}

impl Planner<'_> {
    /// Records `kind name` as it is now (`None`: not there), and says how it
    /// differs from the last apply's state, if it was in it.
    pub fn observe(
        &mut self,
        kind: Kind,
        name: &str,
        now: Option<Value>,
        compare: impl Fn(&Value, &Value) -> Vec<String>,
    ) -> Option<String> {
        let address = kind.address(name);
        let then = self.state.get(&address).cloned();
        if let Some(now) = &now {
            self.observed.insert(address, now.clone());
        }
        match (then, now) {
            (Some(_), None) => Some("deleted since the last apply".to_string()),
            (Some(then), Some(now)) => {
                let what = compare(&then, &now);
                (!what.is_empty())
                    .then(|| format!("{} changed since the last apply", what.join(", ")))
            }
            _ => None,
        }
    }

    /// Adds a change, or, for an object as declared that drifted, the drift alone.
    pub fn change(
        &mut self,
        kind: Kind,
        name: &str,
        action: Option<Action>,
        reasons: Vec<String>,
        drift: Option<String>,
    ) {
        match action {
            Some(action) => self.changes.push(Change {
                kind,
                name: name.to_string(),
                action,
                reasons,
                loses: None,
                drift,
            }),
            None => {
                if let Some(drift) = drift {
                    self.drift
                        .push(format!("{} {name}: {drift}; as declared", kind.as_str()));
                }
            }
        }
    }

    /// Names the last apply held of `kind` that the declaration no longer does.
    pub fn undeclared(&self, kind: Kind, declared: impl Fn(&str) -> bool) -> Vec<String> {
        let prefix = format!("{} ", kind.as_str());
        self.state
            .keys()
            .filter_map(|a| a.strip_prefix(&prefix))
            .filter(|name| !declared(name))
            .map(str::to_string)
            .collect()
    }

    fn namespaces(&mut self, declaration: &Declaration) -> Result<()> {
        for (name, declared) in &declaration.namespaces {
            let key = Key::parse(name).map_err(|e| in_section(e, "namespaces", name))?;
            let (now, current) = match self.contents.get(&key) {
                Some(Content::Namespace { properties }) => (
                    Some(serde_json::json!(properties)),
                    Some(properties.clone()),
                ),
                Some(Content::Table { .. }) => {
                    return Err(Error::invalid(format!(
                        "[namespaces.{name}]: `{name}` is a table on `{}`",
                        self.branch
                    )));
                }
                None => (None, None),
            };
            let keys = declared.properties.clone();
            let drift = self.observe(Kind::Namespace, name, now, |then, now| {
                (restrict(then, &keys) != restrict(now, &keys))
                    .then(|| "properties".to_string())
                    .into_iter()
                    .collect()
            });
            let (action, reasons, properties) = match current {
                None => (
                    Some(Action::Create),
                    Vec::new(),
                    declared.properties.clone(),
                ),
                Some(mut properties) => {
                    let mut reasons = Vec::new();
                    for (k, v) in &declared.properties {
                        match properties.insert(k.clone(), v.clone()) {
                            Some(old) if &old == v => {}
                            Some(old) => reasons.push(format!("property {k}: {old:?} -> {v:?}")),
                            None => reasons.push(format!("+ property {k} = {v:?}")),
                        }
                    }
                    (
                        (!reasons.is_empty()).then_some(Action::Update),
                        reasons,
                        properties,
                    )
                }
            };
            if action.is_some() {
                self.work.operations.push(Operation::Put {
                    key,
                    content: Content::Namespace { properties },
                });
            }
            self.change(Kind::Namespace, name, action, reasons, drift);
        }
        for name in self.undeclared(Kind::Namespace, |n| declaration.namespaces.contains_key(n)) {
            let key = Key::parse(&name)?;
            if !matches!(self.contents.get(&key), Some(Content::Namespace { .. })) {
                continue;
            }
            let left: Vec<&str> = self
                .contents
                .iter()
                .filter(|(k, c)| c.is_table() && k.namespace().as_ref() == Some(&key))
                .map(|(k, _)| k.as_str())
                .filter(|k| {
                    declaration.tables.contains_key(*k)
                        || !self.state.contains_key(&Kind::Table.address(k))
                })
                .collect();
            if !left.is_empty() {
                return Err(Error::invalid(format!(
                    "namespace `{name}` is no longer declared, but it holds {} on `{}`",
                    left.join(", "),
                    self.branch
                ))
                .with_hint(format!(
                    "declare [namespaces.{name}] again, or drop those tables first"
                )));
            }
            self.work.operations.push(Operation::Delete { key });
            self.change(
                Kind::Namespace,
                &name,
                Some(Action::Destroy),
                Vec::new(),
                None,
            );
        }
        Ok(())
    }

    async fn tables(&mut self, declaration: &Declaration) -> Result<()> {
        let tables = self.lake.iceberg_tables();
        for (name, declared) in &declaration.tables {
            let key = Key::table(name).map_err(|e| in_section(e, "tables", name))?;
            self.check_namespace(&key, declaration)?;
            let current = match self.contents.get(&key) {
                Some(Content::Table { metadata_location }) => {
                    Some(tables.load_from(&key, metadata_location).await?)
                }
                Some(Content::Namespace { .. }) => {
                    return Err(Error::invalid(format!(
                        "[tables.\"{name}\"]: `{name}` is a namespace on `{}`",
                        self.branch
                    )));
                }
                None => None,
            };
            let now = current
                .as_ref()
                .map(|t| serde_json::to_value(observed(t.metadata())).unwrap_or_default());
            let keys = declared.properties.clone();
            let drift = self.observe(Kind::Table, name, now, |then, now| {
                table_drift(then, now, &keys)
            });
            let work = super::table::plan(tables, &key, declared, current.as_ref())?;
            let (action, reasons) = match work {
                TableWork::Same => (None, Vec::new()),
                TableWork::Create(updates) => {
                    self.work.tables.push(updates);
                    (Some(Action::Create), Vec::new())
                }
                TableWork::Update(updates, reasons) => {
                    self.work.tables.push(updates);
                    (Some(Action::Update), reasons)
                }
                TableWork::Replace(updates, reasons) => {
                    self.work.tables.push(updates);
                    self.work
                        .operations
                        .push(Operation::Delete { key: key.clone() });
                    (Some(Action::Replace), reasons)
                }
            };
            self.change(Kind::Table, name, action, reasons, drift);
            if action == Some(Action::Replace) {
                let rows = current.as_ref().map_or(0, |t| rows(&key, t));
                self.loses(format!(
                    "its {rows} rows on `{}` (earlier commits keep them)",
                    self.branch
                ));
            }
        }
        for name in self.undeclared(Kind::Table, |n| declaration.tables.contains_key(n)) {
            let key = Key::table(&name)?;
            let Some(Content::Table { metadata_location }) = self.contents.get(&key) else {
                continue;
            };
            let rows = rows(&key, &tables.load_from(&key, metadata_location).await?);
            self.work.operations.push(Operation::Delete { key });
            self.change(Kind::Table, &name, Some(Action::Destroy), Vec::new(), None);
            self.loses(format!(
                "its {rows} rows on `{}` (earlier commits keep them)",
                self.branch
            ));
        }
        Ok(())
    }

    /// Says what the last change added loses.
    pub fn loses(&mut self, what: String) {
        if let Some(change) = self.changes.last_mut() {
            change.loses = Some(what);
        }
    }

    /// A table's namespace must be declared or be there.
    fn check_namespace(&self, key: &Key, declaration: &Declaration) -> Result<()> {
        let Some(ns) = key.namespace() else {
            return Ok(());
        };
        if declaration.namespaces.contains_key(ns.as_str())
            || matches!(self.contents.get(&ns), Some(Content::Namespace { .. }))
        {
            return Ok(());
        }
        Err(Error::not_found(format!(
            "[tables.\"{key}\"]: namespace `{ns}` is neither declared nor on `{}`",
            self.branch
        ))
        .with_hint(format!("declare it: [namespaces.{ns}]")))
    }
}

fn rows(key: &Key, table: &iceberg::table::Table) -> u64 {
    basin_table::Tables::summarize(key, table).rows
}

/// A JSON object of properties, only the names in `keys`.
fn restrict(value: &Value, keys: &BTreeMap<String, String>) -> Vec<(String, Value)> {
    value
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| keys.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// What of a table differs between two observations: its columns, partition, sort, or the
/// properties a declaration names.
fn table_drift(then: &Value, now: &Value, keys: &BTreeMap<String, String>) -> Vec<String> {
    let mut what = Vec::new();
    for field in ["columns", "partition", "sort"] {
        if then.get(field) != now.get(field) {
            what.push(format!("its {field}"));
        }
    }
    let properties = |v: &Value| restrict(v.get("properties").unwrap_or(&Value::Null), keys);
    if properties(then) != properties(now) {
        what.push("its properties".to_string());
    }
    what
}
