//! `basin demo`: a guided tour of the lakehouse on generated TPC-H data.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use basin_ingest::ImportRequest;
use basin_runtime::Stream;
use basin_service::pipeline::{ModelRun, RunRequest};
use basin_service::{Lakehouse, tpch};

use crate::output::status;

#[derive(clap::Args)]
pub struct Args {
    /// Where to create the demo lakehouse (default: a new temporary folder, kept)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// TPC-H scale factor (1.0 is 6 million line items)
    #[arg(long, default_value_t = 0.1)]
    scale: f64,
}

/// What the tour queries at the end: the pipeline's output.
const REVENUE_BY_NATION: &str = "SELECT nation, year, revenue, line_items \
    FROM analytics.revenue_by_nation_year \
    WHERE nation IN ('FRANCE', 'GERMANY', 'JAPAN') ORDER BY nation, year";

/// The demo's pipeline project (examples/tpch-pipeline).
const PIPELINE: &[(&str, &str)] = &[
    (
        "basin.toml",
        include_str!("../../../../examples/tpch-pipeline/basin.toml"),
    ),
    (
        "line_revenue.py",
        include_str!("../../../../examples/tpch-pipeline/line_revenue.py"),
    ),
    (
        "revenue_by_nation_year.sql",
        include_str!("../../../../examples/tpch-pipeline/revenue_by_nation_year.sql"),
    ),
    (
        "checks.py",
        include_str!("../../../../examples/tpch-pipeline/checks.py"),
    ),
];

pub async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = match args.dir {
        Some(dir) => dir,
        None => tempfile::Builder::new()
            .prefix("basin-demo-")
            .tempdir()?
            .keep(),
    };
    std::fs::create_dir_all(&dir)?;
    let lakehouse = Lakehouse::init(&dir, &basin_service::Placement::default()).await?;
    step(&format!("1. Created a lakehouse in {}", dir.display()));

    let data = tempfile::tempdir()?;
    step(&format!(
        "2. Importing TPC-H (scale {}) into namespace `tpch` on `main`",
        args.scale
    ));
    // orders and lineitem arrive in two parts: the second lands later, on a branch.
    for table in tpch::TABLES {
        let parts = if matches!(table, "orders" | "lineitem") {
            2
        } else {
            1
        };
        let path = tpch::write_table(data.path(), table, args.scale, 1, parts)?;
        let report = import(&lakehouse, path, table, "main").await?;
        status(format!(
            "   tpch.{table:<9} {:>9} rows  {:.2}s",
            report.rows, report.seconds
        ));
    }

    step("3. Creating branch `dev` from `main` (no data is copied)");
    lakehouse.refs().create_branch("dev", Some("main")).await?;

    step("4. New orders arrive: appending them on `dev` only");
    for table in ["orders", "lineitem"] {
        let path = tpch::write_table(data.path(), table, args.scale, 2, 2)?;
        let report = import(&lakehouse, path, table, "dev").await?;
        status(format!("   tpch.{table:<9} +{:>8} rows", report.rows));
    }
    let count = "SELECT count(*) AS line_items FROM tpch.lineitem";
    let on_main = scalar(&lakehouse, count, "main").await?;
    let on_dev = scalar(&lakehouse, count, "dev").await?;
    status(format!(
        "   line items: {on_main} on main, {on_dev} on dev: readers of main see nothing yet"
    ));

    step("5. basin diff main dev");
    for entry in lakehouse.refs().diff("main", "dev").await? {
        status(format!("   {:<14} {:?}", entry.key.as_str(), entry.change));
    }

    step("6. basin merge dev --into main (one atomic commit)");
    let report = lakehouse.refs().merge("dev", Some("main"), false).await?;
    status(format!(
        "   merged {} table(s) as commit {}",
        report.changes.len(),
        report.commit.as_deref().map_or("-", |c| &c[..12])
    ));
    let merged = scalar(&lakehouse, count, "main").await?;
    status(format!("   line items on main: {merged}"));

    step("7. basin run: a pipeline of a Python and a SQL model, on a run branch, merged into main");
    let project = dir.join("pipeline");
    std::fs::create_dir_all(&project)?;
    for (name, text) in PIPELINE {
        std::fs::write(project.join(name), text)?;
    }
    status(format!(
        "   {}: line_revenue.py (pyarrow) -> revenue_by_nation_year.sql -> checks.py",
        project.display()
    ));
    let sink =
        Arc::new(|model: &str, _: Stream, line: &str| status(format!("   [{model}] {line}")));
    let progress = Arc::new(|m: &ModelRun| {
        if m.status != "running" {
            status(format!(
                "   {} {} ({}, {:.0} ms, {} rows)",
                m.status, m.name, m.kind, m.ms, m.rows
            ));
        }
    });
    let request = RunRequest {
        dir: project.clone(),
        branch: Some("main".into()),
        ..RunRequest::default()
    };
    let run = lakehouse.pipelines().run(request, sink, progress).await?;
    status(format!(
        "   run {} merged {} into main as commit {}",
        run.id,
        run.branch,
        run.merged_commit.as_deref().map_or("-", |c| &c[..12])
    ));

    step("8. basin query: revenue per nation and year on main, from the pipeline's table");
    let result = lakehouse
        .query(REVENUE_BY_NATION, Some("main"), None)
        .await?;
    println!(
        "{}",
        crate::output::batches_table(&result.schema, &result.batches)?
    );
    step("9. basin log --graph: main, the branch `dev` merged into it, and the run's merge");
    let graph = lakehouse.refs().graph(12, false).await?;
    super::log::show_graph(&graph, crate::output::ListFormat::Table)?;
    status(format!(
        "\nDone in {:.1}s. Explore it yourself:\n  cd {}\n  basin log --graph\n  basin runs ls\n  basin table show tpch.lineitem\n  basin query \"SELECT * FROM tpch.nation LIMIT 5\" --ref main",
        started.elapsed().as_secs_f64(),
        dir.display()
    ));
    Ok(())
}

fn step(line: &str) {
    status(format!("\n{line}"));
}

async fn import(
    lakehouse: &Lakehouse,
    path: PathBuf,
    table: &str,
    branch: &str,
) -> anyhow::Result<basin_ingest::ImportReport> {
    let request = ImportRequest::new(
        vec![path.to_string_lossy().into_owned()],
        format!("tpch.{table}"),
        branch,
    );
    Ok(lakehouse.import(request, None).await?)
}

async fn scalar(lakehouse: &Lakehouse, sql: &str, at: &str) -> anyhow::Result<String> {
    let result = lakehouse.query(sql, Some(at), None).await?;
    let batch = result
        .batches
        .first()
        .ok_or_else(|| anyhow::anyhow!("`{sql}` returned nothing"))?;
    Ok(arrow::util::display::array_value_to_string(
        batch.column(0),
        0,
    )?)
}
