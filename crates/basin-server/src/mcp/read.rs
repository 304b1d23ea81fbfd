//! The tools that change nothing: tables, refs, commits, diffs and read-only SQL.

use basin_catalog::RefKind;
use basin_core::Result;
use basin_core::time::shown;
use futures::StreamExt;
use serde_json::{Value, json};

use super::agent::Agent;
use super::args::Args;
use crate::meter::Meter;

/// Snapshots and commits `describe_table` shows, newest last and first.
const RECENT: usize = 10;
/// How far back in a ref's log `describe_table` looks for commits that changed the table.
const LOG_DEPTH: usize = 200;

pub(super) async fn list_tables(agent: &Agent, args: &Args<'_>) -> Result<String> {
    let lake = &agent.state.lakehouse;
    let at = args.text("ref");
    let namespaces = lake.namespaces().list(at.as_deref()).await?;
    let tables = lake.tables().list_with_columns(at.as_deref()).await?;
    let mut lines = Vec::new();
    for namespace in &namespaces {
        lines.push(format!("namespace {namespace}"));
        let prefix = format!("{namespace}.");
        for table in tables.iter().filter(|t| t.table.starts_with(&prefix)) {
            let columns: Vec<String> = table
                .columns
                .iter()
                .flatten()
                .map(|c| format!("{} {}", c.name, c.data_type))
                .collect();
            lines.push(format!("  {} ({})", table.table, columns.join(", ")));
        }
    }
    if lines.is_empty() {
        return Ok("no namespaces and no tables yet".into());
    }
    Ok(lines.join("\n"))
}

pub(super) async fn describe_table(agent: &Agent, args: &Args<'_>) -> Result<String> {
    let lake = &agent.state.lakehouse;
    let (table, at) = (args.required("table")?, args.text("ref"));
    let summary = lake.tables().show(&table, at.as_deref()).await?;
    let mut described = serde_json::to_value(&summary)?;
    if let Some(Value::Array(snapshots)) = described.get_mut("snapshots") {
        let older = snapshots.len().saturating_sub(RECENT);
        snapshots.drain(..older);
    }
    let commits: Vec<Value> = lake
        .refs()
        .log(at.as_deref(), LOG_DEPTH)
        .await?
        .into_iter()
        .filter(|c| c.changed.contains(&summary.table))
        .take(RECENT)
        .map(|c| {
            json!({"id": c.id.short(), "time": shown(c.created_at_ms), "author": c.author, "message": c.message})
        })
        .collect();
    described["commits"] = Value::Array(commits);
    Ok(serde_json::to_string_pretty(&described)?)
}

pub(super) async fn list_refs(agent: &Agent) -> Result<String> {
    let refs = agent.state.lakehouse.refs();
    let mut lines = Vec::new();
    for (kind, word) in [(RefKind::Branch, "branch"), (RefKind::Tag, "tag")] {
        for r in refs.list(kind).await? {
            lines.push(format!(
                "{word} {} {} {}",
                r.name,
                r.head.short(),
                r.message
            ));
        }
    }
    Ok(lines.join("\n"))
}

pub(super) async fn log(agent: &Agent, args: &Args<'_>) -> Result<String> {
    let limit = args
        .number("limit")
        .map_or(20, |n| n as usize)
        .clamp(1, 200);
    let at = args.text("ref");
    let entries = agent
        .state
        .lakehouse
        .refs()
        .log(at.as_deref(), limit)
        .await?;
    Ok(entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} [{}]",
                e.id.short(),
                shown(e.created_at_ms),
                e.author,
                e.message,
                e.changed.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

pub(super) async fn diff(agent: &Agent, args: &Args<'_>) -> Result<String> {
    let (from, to) = (args.required("from")?, args.required("to")?);
    let entries = agent.state.lakehouse.refs().diff_tables(&from, &to).await?;
    if entries.is_empty() {
        return Ok(format!("no differences between `{from}` and `{to}`"));
    }
    Ok(serde_json::to_string_pretty(&entries)?)
}

/// Runs read-only SQL and answers at most `max_rows` rows and `[server] mcp_max_bytes` of
/// text. Reading stops at the cap: an agent's answer never holds more than it shows. An
/// answer read whole is kept in the result cache for the next identical query.
pub(super) async fn query(agent: &Agent, args: &Args<'_>) -> Result<String> {
    let (state, sql) = (&agent.state, args.required("sql")?);
    let cap = state.limits.mcp_max_rows;
    let max_rows = args.number("max_rows").unwrap_or(100).clamp(1, cap) as usize;
    let lake = &state.lakehouse;
    let meter = Meter::new("mcp", lake.clone(), state.metrics.clone());
    let started = async {
        meter.hold(
            state
                .turns
                .take_within(lake.sql().limits().query_timeout)
                .await?,
        );
        let at = lake.resolve(args.text("ref").as_deref()).await?;
        let session = basin_sql::Session::new(lake.sql(), lake.iceberg_tables(), &at, None)
            .await?
            .with_result_cache(true)
            .with_kept_columns(true);
        session.start(&sql, session.default_timeout()).await
    };
    let mut running = started.await.inspect_err(|e| meter.failed(e))?;
    meter.plan(running.plan.clone());
    let header: Vec<&str> = running
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut text = header.join(" | ");
    let (mut shown, mut more) = (0usize, false);
    while let Some(batch) = running.batches.next().await {
        let batch = batch.inspect_err(|e| meter.failed(e))?;
        meter.rows(batch.num_rows());
        let take = batch.num_rows().min(max_rows - shown);
        for row in basin_sql::text_rows(&[batch.slice(0, take)])? {
            let line = row.join(" | ");
            if text.len() + 1 + line.len() > state.limits.mcp_max_bytes as usize {
                state.metrics.limit_hit("mcp_max_bytes");
                more = true;
                break;
            }
            text.push('\n');
            text.push_str(&line);
            shown += 1;
        }
        if more || take < batch.num_rows() || shown == max_rows {
            more |= take < batch.num_rows() || running.batches.next().await.is_some();
            break;
        }
    }
    // What the agent reads is whole: the rest was left on purpose, and said.
    meter.ended();
    if more && max_rows == cap as usize {
        state.metrics.limit_hit("mcp_max_rows");
    }
    text.push_str(&match (shown, more) {
        (n, false) => format!("\n({n} rows)"),
        (n, true) => format!(
            "\n({n} rows shown; the answer has more: narrow it with WHERE or LIMIT, or count them with count(*))"
        ),
    });
    Ok(text)
}
