//! `basin mcp`: the lakehouse as a Model Context Protocol server on stdin and stdout, for
//! coding agents and chat assistants. One JSON-RPC 2.0 message per line (MCP's stdio
//! transport); the methods an agent's tools need: `initialize`, `ping`, `tools/list` and
//! `tools/call`. Written by hand: those four methods are a few dozen lines of JSON, where the
//! Rust SDK (rmcp) would add its macro and schema crates to every build of Basin.
//!
//! The tools read any ref, and write only to branches other than `main` (creating one,
//! importing a file into one): an agent works on a branch of its own, and `main` changes only
//! when a person merges. Queries pass the SQL statement
//! policy every door applies (reads only), with a row cap and a byte cap on the answer.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use basin_service::Lakehouse;

use crate::lake::{Context, Lake};
use crate::output::batches_rows;

/// The protocol revisions Basin speaks through `initialize`, oldest first.
const VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The most rows a query answer shows, and the most bytes of text.
const MAX_ROWS: usize = 1000;
const MAX_BYTES: usize = 64 * 1024;

#[derive(clap::Args)]
#[command(
    after_help = "Add it to an agent's MCP servers, run in the lakehouse's folder:
  {\"mcpServers\": {\"basin\": {\"command\": \"basin\", \"args\": [\"--home\", \"/path/to/lake\", \"mcp\"]}}}

Tools: list_tables, describe_table, query (read-only, capped), log, diff, create_branch,
import_file (into a branch other than main). Merging into main stays a person's step. Over HTTP (/mcp on
`basin serve`) it is not built yet."
)]
pub struct Args {}

pub async fn run(_args: Args, ctx: &Context) -> anyhow::Result<()> {
    let Lake::Local(lake) = ctx.open().await? else {
        anyhow::bail!(
            basin_core::Error::invalid(
                "`basin mcp` serves a local lakehouse; over --remote it is not built yet"
            )
            .with_hint("run `basin mcp` where the lakehouse is (`--home PATH`)")
        );
    };
    let lake = &lake;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(message) => answer(lake, message).await,
            Err(e) => Some(error(Value::Null, -32700, &format!("not JSON: {e}"))),
        };
        if let Some(reply) = reply {
            out.write_all(format!("{reply}\n").as_bytes()).await?;
            out.flush().await?;
        }
    }
    Ok(())
}

/// The reply to one message (none to a notification).
async fn answer(lake: &Lakehouse, message: Value) -> Option<Value> {
    let id = message.get("id").cloned()?;
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let result = match message["method"].as_str().unwrap_or_default() {
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or_default();
            let version = VERSIONS
                .iter()
                .find(|v| **v == asked)
                .unwrap_or(&VERSIONS[VERSIONS.len() - 1]);
            json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "basin", "version": env!("CARGO_PKG_VERSION")},
                "instructions": "A Basin lakehouse: Iceberg tables under git-like branches. Work on a branch of your own (create_branch), read any ref with query; a person merges into main.",
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({"tools": tools()}),
        "tools/call" => {
            let name = params["name"].as_str().unwrap_or_default();
            let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
            match call(lake, name, &arguments).await {
                Ok(text) => json!({"content": [{"type": "text", "text": text}], "isError": false}),
                Err(e) => {
                    let text = match e.downcast_ref::<basin_core::Error>() {
                        Some(b) => match &b.hint {
                            Some(hint) => format!("{}\nhint: {hint}", b.message),
                            None => b.message.clone(),
                        },
                        None => format!("{e:#}"),
                    };
                    json!({"content": [{"type": "text", "text": text}], "isError": true})
                }
            }
        }
        other => return Some(error(id, -32601, &format!("no method `{other}`"))),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Each tool: its name, what it does and costs, and its arguments.
fn tools() -> Value {
    let at = json!({"type": "string", "description": "A branch, tag or REF@COMMIT (default: the lakehouse's current branch)"});
    json!([
        {
            "name": "list_tables",
            "description": "The tables (ns.table) and their columns on a ref. Reads the catalog and each table's metadata; changes nothing.",
            "inputSchema": {"type": "object", "properties": {"ref": at}},
        },
        {
            "name": "describe_table",
            "description": "One table on a ref: its columns and types, partitioning, row and file counts, and its recent snapshots. Reads metadata only; changes nothing.",
            "inputSchema": {"type": "object", "properties": {"table": {"type": "string", "description": "ns.table"}, "ref": at}, "required": ["table"]},
        },
        {
            "name": "query",
            "description": format!("Runs read-only SQL (SELECT, WITH, SHOW, EXPLAIN; the SQL policy refuses anything else) on a ref and returns a text table of at most max_rows rows (default 100, at most {MAX_ROWS}) and {} KiB. Scans the tables it reads; changes nothing.", MAX_BYTES / 1024),
            "inputSchema": {"type": "object", "properties": {"sql": {"type": "string"}, "ref": at, "max_rows": {"type": "integer", "minimum": 1, "maximum": MAX_ROWS}}, "required": ["sql"]},
        },
        {
            "name": "log",
            "description": "A ref's commits, newest first: id, time, author, message, tables changed. Reads the catalog; changes nothing.",
            "inputSchema": {"type": "object", "properties": {"ref": at, "limit": {"type": "integer", "minimum": 1, "maximum": 200}}},
        },
        {
            "name": "diff",
            "description": "The tables added, changed or dropped between two refs. Reads the catalog; changes nothing.",
            "inputSchema": {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}}, "required": ["from", "to"]},
        },
        {
            "name": "import_file",
            "description": "Appends a local file's rows (CSV, JSON, Parquet or Arrow IPC; the table is created from it if missing) to a table on a branch other than main, in one commit. Reads the file. Writes data files and one commit, on that branch only.",
            "inputSchema": {"type": "object", "properties": {"path": {"type": "string", "description": "A file on the machine running `basin mcp`"}, "table": {"type": "string", "description": "ns.table"}, "branch": {"type": "string", "description": "Your branch (not main)"}}, "required": ["path", "table", "branch"]},
        },
        {
            "name": "create_branch",
            "description": "Creates a branch (copying no data) where you can work without touching main; a person merges it. Writes one catalog row.",
            "inputSchema": {"type": "object", "properties": {"name": {"type": "string"}, "from": at}, "required": ["name"]},
        },
    ])
}

/// Runs tool `name`; its answer as text.
async fn call(lake: &Lakehouse, name: &str, arguments: &Value) -> anyhow::Result<String> {
    let text = |key: &str| arguments[key].as_str().map(str::to_string);
    let required =
        |key: &str| text(key).ok_or_else(|| anyhow::anyhow!("`{name}` needs the argument `{key}`"));
    let at = text("ref");
    match name {
        "list_tables" => {
            let tables = lake.tables().list(at.as_deref()).await?;
            Ok(tables
                .iter()
                .map(|t| {
                    let columns = t.columns.iter().flatten();
                    let columns: Vec<String> = columns
                        .map(|c| format!("{} {}", c.name, c.data_type))
                        .collect();
                    format!("{} ({})", t.table, columns.join(", "))
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "describe_table" => {
            let summary = lake
                .tables()
                .show(&required("table")?, at.as_deref())
                .await?;
            Ok(serde_json::to_string_pretty(&summary)?)
        }
        "query" => {
            let max_rows = arguments["max_rows"]
                .as_u64()
                .map_or(100, |n| n as usize)
                .clamp(1, MAX_ROWS);
            query(lake, &required("sql")?, at.as_deref(), max_rows).await
        }
        "log" => {
            let limit = arguments["limit"]
                .as_u64()
                .map_or(20, |n| n as usize)
                .clamp(1, 200);
            let entries = lake.refs().log(at.as_deref(), limit).await?;
            Ok(entries
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {} {} [{}]",
                        e.id.short(),
                        crate::output::time(e.created_at_ms),
                        e.author,
                        e.message,
                        e.changed.join(", ")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "diff" => {
            let entries = lake
                .refs()
                .diff_tables(&required("from")?, &required("to")?)
                .await?;
            if entries.is_empty() {
                return Ok("no differences".into());
            }
            Ok(serde_json::to_string_pretty(&entries)?)
        }
        "import_file" => {
            let branch = required("branch")?;
            if branch == basin_catalog::MAIN {
                anyhow::bail!(
                    basin_core::Error::invalid(
                        "an agent imports into a branch of its own, not `main`"
                    )
                    .with_hint(
                        "create_branch first and import there; a person merges it into main"
                    )
                );
            }
            let request = basin_ingest::ImportRequest::new(
                vec![required("path")?],
                required("table")?,
                branch,
            );
            let report = lake.import(request, None).await?;
            Ok(format!(
                "imported {} rows from {} file(s) into {} on `{}` (commit {})",
                report.rows,
                report.files,
                report.table,
                report.branch,
                &report.commit[..12.min(report.commit.len())]
            ))
        }
        "create_branch" => {
            let created = lake
                .refs()
                .create_branch(&required("name")?, text("from").as_deref())
                .await?;
            Ok(format!(
                "created branch `{}` at {}",
                created.name,
                created.head.short()
            ))
        }
        other => anyhow::bail!("no tool `{other}`: see tools/list"),
    }
}

/// Runs read-only `sql` on `at`: at most `max_rows` rows and [`MAX_BYTES`] of text, with the
/// total row count.
async fn query(
    lake: &Lakehouse,
    sql: &str,
    at: Option<&str>,
    max_rows: usize,
) -> anyhow::Result<String> {
    let result = lake.usage().query_via("mcp", sql, at, None, false).await?;
    let total: usize = result.batches.iter().map(|b| b.num_rows()).sum();
    let mut shown = Vec::new();
    let mut left = max_rows;
    for batch in &result.batches {
        if left == 0 {
            break;
        }
        let take = batch.num_rows().min(left);
        shown.push(batch.slice(0, take));
        left -= take;
    }
    let mut table = compact_table(&result.schema, &shown)?;
    if table.len() > MAX_BYTES {
        let cut = (0..=MAX_BYTES)
            .rev()
            .find(|i| table.is_char_boundary(*i))
            .unwrap_or(0);
        table.truncate(cut);
        table.push_str("\n... (cut at the byte cap)");
    }
    let kept = total.min(max_rows);
    Ok(format!("{table}\n({total} rows; {kept} shown)"))
}

/// Rows as compact text for a model to read: a header of column names, then one line per
/// row, values separated by ` | ` (NULL for a null).
fn compact_table(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[arrow::array::RecordBatch],
) -> anyhow::Result<String> {
    let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut lines = vec![header.join(" | ")];
    lines.extend(batches_rows(batches)?.iter().map(|row| row.join(" | ")));
    Ok(lines.join("\n"))
}
