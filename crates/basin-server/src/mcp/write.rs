//! The tools that change a branch: never `main`, and never a merge. An agent creates a
//! branch, imports files and runs pipelines there, and proposes a merge as a review.

use basin_core::{Error, ErrorKind, Result};
use basin_service::pipeline::{RemoteRun, is_pipeline_branch};

use super::agent::Agent;
use super::args::Args;
use crate::http::{UploadFolder, as_sent, file_name, uploads_dir};

pub(super) async fn create_branch(agent: &Agent, args: &Args<'_>) -> Result<String> {
    let name = args.required("name")?;
    own_branch(&name, "create")?;
    let created = agent
        .state
        .lakehouse
        .refs()
        .create_branch(&name, args.text("from").as_deref())
        .await?;
    Ok(format!(
        "created branch `{}` at {}",
        created.name,
        created.head.short()
    ))
}

pub(super) async fn import_file(agent: &Agent, args: &Args<'_>) -> Result<String> {
    let (table, branch) = (args.required("table")?, args.required("branch")?);
    own_branch(&branch, "import into")?;
    let mut request = basin_ingest::ImportRequest::new(vec![], table, branch);
    request.mode = match args.text("mode").as_deref() {
        None | Some("append") => basin_ingest::Mode::Append,
        Some("replace") => basin_ingest::Mode::Replace,
        Some(other) => {
            return Err(Error::invalid(format!(
                "mode `{other}`: use `append` or `replace`"
            )));
        }
    };
    let lake = &agent.state.lakehouse;
    // Removed when the import ends, however it ends.
    let mut folder = None;
    match (args.text("content"), args.text("path")) {
        (Some(content), None) => {
            let name = file_name(args.text("filename").as_deref().unwrap_or("data.csv"))?;
            let kept = UploadFolder(uploads_dir(lake).join(basin_core::ids::ordered()));
            let path = kept.path().join(&name);
            let io = |e| Error::io_with("storing the file to import", e);
            tokio::fs::create_dir_all(kept.path()).await.map_err(io)?;
            tokio::fs::write(&path, content).await.map_err(io)?;
            request.sources = vec![path.display().to_string()];
            folder = Some((kept, path, name));
        }
        (None, Some(_)) if agent.remote => {
            return Err(Error::new(
                ErrorKind::Forbidden,
                "over HTTP, `import_file` takes the file's `content`, not a `path`: files on the server are not the caller's to read",
            )
            .with_hint("send the file's text as `content` with its `filename`, or POST it to /api/v1/tables/NAME/import"));
        }
        (None, Some(path)) => request.sources = vec![path],
        _ => {
            return Err(
                Error::invalid("`import_file` needs either `content` or `path`").with_hint(
                    "give the file's text as `content` (with `filename` for its format)",
                ),
            );
        }
    }
    let report = lake.import(request, None).await;
    let report = match &folder {
        // Errors name the file as the agent named it, not where it was kept.
        Some((_, path, name)) => report.map_err(|e| as_sent(e, path, name))?,
        None => report?,
    };
    drop(folder);
    Ok(format!(
        "imported {} rows from {} file(s) into {} on `{}` (commit {})",
        report.rows,
        report.files,
        report.table,
        report.branch,
        &report.commit[..12.min(report.commit.len())]
    ))
}

pub(super) async fn run_pipeline(agent: &Agent, args: &Args<'_>) -> Result<String> {
    let branch = args.required("branch")?;
    own_branch(&branch, "run a pipeline into")?;
    let run = RemoteRun {
        files: args.strings("files")?,
        branch: Some(branch),
        params: args.strings("params")?,
        ..RemoteRun::default()
    };
    // On a task of its own, with the caller's grants: a run ends, or fails whole, even when
    // the agent hangs up; it holds one of its writer's turns until then (`crate::turns`).
    let turn = agent.state.run_turn().await?;
    let lakehouse = agent.state.lakehouse.clone();
    let work = basin_catalog::actor::carried(basin_catalog::actor::current(), async move {
        let _turn = turn;
        lakehouse.pipelines().run_files(run).await
    });
    let record = tokio::spawn(work)
        .await
        .map_err(|e| Error::internal(format!("the run stopped: {e}")))??;
    let mut lines = vec![format!(
        "run {} {} into `{}`{}",
        record.id,
        record.status,
        record.target,
        record
            .merged_commit
            .as_deref()
            .map(|c| format!(" (commit {})", &c[..12.min(c.len())]))
            .unwrap_or_default()
    )];
    for model in &record.models {
        lines.push(format!(
            "  {} ({}) {}: {} rows{}{}",
            model.name,
            model.kind,
            model.status,
            model.rows,
            model
                .table
                .as_deref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default(),
            model
                .error
                .as_deref()
                .map(|e| format!("\n    {e}"))
                .unwrap_or_default()
        ));
    }
    if let Some(error) = &record.error {
        lines.push(format!("error: {error}"));
    }
    Ok(lines.join("\n"))
}

pub(super) async fn propose_merge(agent: &Agent, args: &Args<'_>) -> Result<String> {
    let branch = args.required("branch")?;
    let into = args
        .text("into")
        .unwrap_or_else(|| basin_catalog::MAIN.to_string());
    let review = agent
        .state
        .lakehouse
        .reviews()
        .open(&branch, &into, args.text("title").as_deref())
        .await?;
    Ok(format!(
        "opened review #{}: {} (`{}` into `{}`); a person approves and merges it (basin review show {})",
        review.id, review.title, review.source, review.target, review.id
    ))
}

/// Refuses `main` and run branches: an agent writes to a branch of its own.
fn own_branch(branch: &str, doing: &str) -> Result<()> {
    if branch == basin_catalog::MAIN {
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!("an agent does not {doing} `main`; it works on a branch of its own"),
        )
        .with_hint(
            "create_branch first and work there; propose_merge asks a person to merge it into main",
        ));
    }
    if is_pipeline_branch(branch) {
        return Err(Error::invalid(format!(
            "`{branch}` is a pipeline run's branch, which the run owns"
        ))
        .with_hint("work on a branch of your own (create_branch)"));
    }
    Ok(())
}
