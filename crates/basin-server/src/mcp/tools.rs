//! The tools, as one table: each tool's name, the least role that may call it, what it does,
//! costs and changes (the model reads this to choose), and its arguments' JSON Schema.

use basin_core::{Error, ErrorKind, Result};
use basin_service::Role;
use serde_json::{Value, json};

use super::agent::Agent;
use super::args::Args;
use super::errors::{Rpc, failed, text};
use super::{read, write};

struct Tool {
    name: &'static str,
    /// The least role that may call it (over HTTP; the local user of `basin mcp` is an admin).
    role: Role,
    /// Changes nothing: MCP's `readOnlyHint`.
    reads_only: bool,
    description: String,
    arguments: Vec<Argument>,
}

/// An argument: its name, JSON Schema, and whether it is required.
type Argument = (&'static str, Value, bool);

fn table() -> Vec<Tool> {
    let mut tools = read_tools();
    tools.extend(write_tools());
    tools
}

fn reads(name: &'static str, description: &str, arguments: Vec<Argument>) -> Tool {
    Tool {
        name,
        role: Role::Reader,
        reads_only: true,
        description: description.to_string(),
        arguments,
    }
}

fn writes(name: &'static str, description: &str, arguments: Vec<Argument>) -> Tool {
    Tool {
        name,
        role: Role::Writer,
        reads_only: false,
        description: format!("{description} Needs a writer's token over HTTP."),
        arguments,
    }
}

fn at() -> Value {
    json!({"type": "string", "description": "A branch, tag or REF@COMMIT (default: main over HTTP, the lakehouse's current branch over stdio)"})
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

/// The tools that change nothing.
fn read_tools() -> Vec<Tool> {
    let read = reads;
    vec![
        read(
            "list_tables",
            "The namespaces and tables (ns.table) on a ref, with each table's columns. Reads the catalog and each table's metadata; changes nothing.",
            vec![("ref", at(), false)],
        ),
        read(
            "describe_table",
            "One table on a ref: its columns and types, partitioning, row and file counts, recent snapshots, and the recent commits that changed it. Reads metadata only; changes nothing.",
            vec![("table", string("ns.table"), true), ("ref", at(), false)],
        ),
        read(
            "query",
            "Runs read-only SQL (SELECT, WITH, SHOW, EXPLAIN; the SQL policy every door applies refuses anything else) on a ref. Answers a compact text table of at most max_rows rows (default 100; the server's [server] mcp_max_rows and mcp_max_bytes cap it) and stops reading there. Scans the data the query reads, under the server's query time and memory limits; changes nothing.",
            vec![
                (
                    "sql",
                    string("The statements; the last one's rows are answered"),
                    true,
                ),
                ("ref", at(), false),
                ("max_rows", json!({"type": "integer", "minimum": 1}), false),
            ],
        ),
        read(
            "list_refs",
            "The branches and tags, with the commit each points at and its message. Reads the catalog; changes nothing.",
            vec![],
        ),
        read(
            "log",
            "A ref's commits, newest first: id, time, author, message, tables changed. Reads the catalog; changes nothing.",
            vec![
                ("ref", at(), false),
                (
                    "limit",
                    json!({"type": "integer", "minimum": 1, "maximum": 200}),
                    false,
                ),
            ],
        ),
        read(
            "diff",
            "The tables added, changed or dropped between two refs, with files and rows added and removed. Reads the catalog and table metadata; changes nothing.",
            vec![
                ("from", string("A ref"), true),
                ("to", string("A ref"), true),
            ],
        ),
    ]
}

/// The tools that change a branch.
fn write_tools() -> Vec<Tool> {
    let (write, branch) = (writes, || {
        string("Your branch: not main (create_branch first)")
    });
    vec![
        write(
            "create_branch",
            "Creates a branch where you can work without touching main (no data is copied); a person merges it. Writes one catalog row.",
            vec![
                (
                    "name",
                    string("The new branch's name, e.g. agent/fix-orders"),
                    true,
                ),
                ("from", at(), false),
            ],
        ),
        write(
            "import_file",
            "Imports a file's rows (CSV, JSON lines, Parquet or Arrow IPC) into a table on a branch other than main, creating the table if missing, in one commit. Give `content` (the file's text, up to the server's request size) with `filename` for its format; over stdio `path` (a file on the machine running `basin mcp`) also works. Writes data files and one commit, on that branch only.",
            vec![
                ("table", string("ns.table"), true),
                ("branch", branch(), true),
                (
                    "content",
                    string("The file's text (CSV or JSON lines)"),
                    false,
                ),
                (
                    "filename",
                    string("The file's name; its suffix gives the format (default: data.csv)"),
                    false,
                ),
                (
                    "path",
                    string("A file on the machine running `basin mcp` (stdio only)"),
                    false,
                ),
                (
                    "mode",
                    json!({"type": "string", "enum": ["append", "replace"]}),
                    false,
                ),
            ],
        ),
        write(
            "run_pipeline",
            "Runs a pipeline of SQL and Python models (the files of a project: basin.toml, models/*.sql, models/*.py) on a run branch of its own, checks its expectations, and merges the run into your branch (not main) in one commit; a failed run leaves your branch as it was. Costs the models' compute (Python models run confined, metered). Writes the models' tables on that branch only.",
            vec![
                (
                    "files",
                    json!({"type": "object", "additionalProperties": {"type": "string"}, "description": "The project's files: relative path to text, e.g. {\"models/top.sql\": \"SELECT ...\"}"}),
                    true,
                ),
                ("branch", branch(), true),
                (
                    "params",
                    json!({"type": "object", "additionalProperties": {"type": "string"}, "description": "The project's parameters"}),
                    false,
                ),
            ],
        ),
        write(
            "propose_merge",
            "Opens a review proposing to merge your branch into another (default main): a person sees its diff and checks, approves and merges it. Merges nothing itself. Writes one review.",
            vec![
                ("branch", string("The branch with your changes"), true),
                (
                    "into",
                    string("The branch to merge into (default main)"),
                    false,
                ),
                (
                    "title",
                    string("What the change is, for the reviewer"),
                    false,
                ),
            ],
        ),
    ]
}

/// `tools/list`: every tool (a reader's token is refused the ones that write, by name).
pub(super) fn list() -> Vec<Value> {
    table()
        .into_iter()
        .map(|t| {
            let properties: serde_json::Map<String, Value> = t
                .arguments
                .iter()
                .map(|(name, schema, _)| (name.to_string(), schema.clone()))
                .collect();
            let required: Vec<&str> = t
                .arguments
                .iter()
                .filter(|(_, _, required)| *required)
                .map(|(name, _, _)| *name)
                .collect();
            json!({
                "name": t.name,
                "description": t.description,
                "inputSchema": {"type": "object", "properties": properties, "required": required},
                "annotations": {
                    "readOnlyHint": t.reads_only,
                    "destructiveHint": false,
                    "openWorldHint": false,
                },
            })
        })
        .collect()
}

/// `tools/call`: the tool's answer, or its failure as its answer; an unknown tool is a
/// protocol error.
pub(super) async fn call(agent: &Agent, params: &Value) -> std::result::Result<Value, Rpc> {
    let name = params["name"].as_str().unwrap_or_default();
    let Some(tool) = table().into_iter().find(|t| t.name == name) else {
        return Err(Rpc::invalid_params(format!(
            "no tool `{name}`: tools/list names them"
        )));
    };
    let empty = json!({});
    let args = Args {
        tool: tool.name,
        values: params.get("arguments").unwrap_or(&empty),
    };
    let answer = match allowed(agent, &tool) {
        Err(e) => Err(e),
        Ok(()) => run(agent, tool.name, &args).await,
    };
    Ok(match answer {
        Ok(answer) => text(answer),
        Err(e) => failed(&e, agent.remote),
    })
}

fn allowed(agent: &Agent, tool: &Tool) -> Result<()> {
    if agent.role >= tool.role {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Forbidden,
        format!(
            "this token is a {}; `{}` needs a {}",
            agent.role.as_str(),
            tool.name,
            tool.role.as_str()
        ),
    )
    .with_hint(format!(
        "connect with a {}'s token (basin token create --role {}), or use the tools that change nothing",
        tool.role.as_str(),
        tool.role.as_str()
    )))
}

/// Runs tool `name`. Each tool's future goes on the heap: an import's or a pipeline run's
/// is deep, and a tokio thread's stack is small.
async fn run(agent: &Agent, name: &str, args: &Args<'_>) -> Result<String> {
    match name {
        "list_tables" => Box::pin(read::list_tables(agent, args)).await,
        "describe_table" => Box::pin(read::describe_table(agent, args)).await,
        "query" => Box::pin(read::query(agent, args)).await,
        "list_refs" => Box::pin(read::list_refs(agent)).await,
        "log" => Box::pin(read::log(agent, args)).await,
        "diff" => Box::pin(read::diff(agent, args)).await,
        "create_branch" => Box::pin(write::create_branch(agent, args)).await,
        "import_file" => Box::pin(write::import_file(agent, args)).await,
        "run_pipeline" => Box::pin(write::run_pipeline(agent, args)).await,
        "propose_merge" => Box::pin(write::propose_merge(agent, args)).await,
        other => Err(Error::internal(format!("the tool `{other}` has no code"))),
    }
}
