//! The resources: each table's schema on a ref (`basin://tables/REF/NS.TABLE`, as JSON) and
//! the docs pages an agent needs to work here (`basin://docs/PAGE`, Markdown, built into
//! the binary so that they match it).

use basin_core::Error;
use serde_json::{Value, json};

use super::agent::Agent;
use super::errors::{Rpc, told};

/// The docs pages served: name, what it covers, text.
const DOCS: [(&str, &str, &str); 5] = [
    (
        "agents",
        "How an agent works here: the tools, what they change, branches and reviews",
        include_str!("../../../../docs/agents.md"),
    ),
    (
        "pipelines",
        "Pipelines of SQL and Python models: the project's files, expectations, runs",
        include_str!("../../../../docs/pipelines.md"),
    ),
    (
        "functions",
        "Python functions: the decorators, the SDK, what a function may read",
        include_str!("../../../../docs/functions.md"),
    ),
    (
        "import",
        "Importing files: formats, schemas, modes, errors",
        include_str!("../../../../docs/import.md"),
    ),
    (
        "teams",
        "Tokens, grants, protected branches and reviews",
        include_str!("../../../../docs/teams.md"),
    ),
];

const TABLES: &str = "basin://tables/";
const DOCS_PREFIX: &str = "basin://docs/";

/// `resources/list`: the docs pages, and the schema of each table on main.
pub(super) async fn list(agent: &Agent) -> Result<Value, Rpc> {
    let mut resources: Vec<Value> = DOCS
        .iter()
        .map(|(name, about, _)| {
            json!({"uri": format!("{DOCS_PREFIX}{name}"), "name": format!("docs/{name}"), "description": about, "mimeType": "text/markdown"})
        })
        .collect();
    let tables = agent
        .state
        .lakehouse
        .tables()
        .list(Some(basin_catalog::MAIN))
        .await
        .map_err(|e| failed(agent, &e))?;
    resources.extend(tables.iter().map(|t| {
        json!({"uri": format!("{TABLES}{}/{}", basin_catalog::MAIN, t.table), "name": t.table, "description": format!("The schema of {} on main", t.table), "mimeType": "application/json"})
    }));
    Ok(json!({"resources": resources}))
}

/// `resources/templates/list`: a table's schema on any ref, and a docs page.
pub(super) fn templates() -> Value {
    json!([
        {"uriTemplate": format!("{TABLES}{{ref}}/{{table}}"), "name": "table schema", "description": "A table's columns, partitioning and row count on a ref (a branch, tag or REF@COMMIT); table is ns.table", "mimeType": "application/json"},
        {"uriTemplate": format!("{DOCS_PREFIX}{{page}}"), "name": "docs page", "description": format!("Basin's docs: {}", DOCS.map(|(name, _, _)| name).join(", ")), "mimeType": "text/markdown"},
    ])
}

/// `resources/read`.
pub(super) async fn read(agent: &Agent, params: &Value) -> Result<Value, Rpc> {
    let uri = params["uri"].as_str().unwrap_or_default();
    let (text, mime) = if let Some(page) = uri.strip_prefix(DOCS_PREFIX) {
        let Some((_, _, text)) = DOCS.iter().find(|(name, _, _)| *name == page) else {
            return Err(unknown(uri));
        };
        (text.to_string(), "text/markdown")
    } else if let Some(rest) = uri.strip_prefix(TABLES) {
        // The table is the last part: a ref may hold a `/` (agent/try), a table name not.
        let Some((at, table)) = rest.rsplit_once('/') else {
            return Err(unknown(uri));
        };
        let summary = agent
            .state
            .lakehouse
            .tables()
            .show(table, Some(at))
            .await
            .map_err(|e| failed(agent, &e))?;
        let schema = json!({
            "table": summary.table, "ref": at, "columns": summary.columns,
            "partition_spec": summary.partition_spec, "sort_order": summary.sort_order,
            "rows": summary.rows,
        });
        (
            serde_json::to_string_pretty(&schema).unwrap_or_default(),
            "application/json",
        )
    } else {
        return Err(unknown(uri));
    };
    Ok(json!({"contents": [{"uri": uri, "mimeType": mime, "text": text}]}))
}

fn unknown(uri: &str) -> Rpc {
    Rpc::invalid_params(format!(
        "no resource `{uri}`: resources/list and resources/templates/list name them"
    ))
}

/// A resource that could not be read: its error, as the protocol carries one.
fn failed(agent: &Agent, e: &Error) -> Rpc {
    Rpc::invalid_params(told(e, agent.remote))
}
