//! `basin doctor`: the walls functions run inside on this machine, and the limits.

use std::path::Path;

use basin_core::units::format_size as bytes;
use basin_runtime::Walls;
use serde::Serialize;

use crate::lake::open_local;
use crate::output::{FormatArg, ListFormat, print, status};

#[derive(clap::Args)]
#[command(
    after_help = "Each wall keeps a function from something; Basin builds each one with
what the kernel offers (namespaces, Landlock, rlimits) and no extra software. With
`[functions] isolation = \"strict\"` (the default when every wall can be built) a function
is not run while a wall is missing; with \"best-effort\" it runs, and Basin says which walls
are missing. docs/functions.md explains each wall.

Examples:
  basin doctor
  basin doctor --format json"
)]
pub struct Args {
    #[command(flatten)]
    format: FormatArg,
}

#[derive(Serialize)]
struct WallRow<'a> {
    wall: &'a str,
    in_force: bool,
    how: &'a str,
    guards: &'a str,
}

#[derive(Serialize)]
struct Report<'a> {
    isolation: &'a str,
    /// Whether `[functions] isolation` chose the mode, or the probe did.
    isolation_set: bool,
    functions_run: bool,
    walls: Vec<WallRow<'a>>,
    max_processes: u64,
    max_open_files: u64,
    nice: u8,
    /// Whether the functions' CPU share is held below Basin's by a cgroup, and how (or why
    /// only by each process's nice value).
    cpu_share_in_force: bool,
    cpu_share: &'a str,
    max_folder_size_bytes: u64,
    running_as_root: bool,
    /// Where queries spill (`[sql] spill_dir`), how much they may keep there
    /// (`spill_limit`), and what is free there now.
    spill_dir: String,
    spill_limit_bytes: u64,
    spill_free_bytes: Option<u64>,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    // Outside a lakehouse the defaults apply.
    let (options, sql) = match open_local(home).await {
        Ok(lakehouse) => (
            lakehouse.settings().runtime.clone(),
            lakehouse.settings().sql.clone(),
        ),
        Err(e)
            if e.downcast_ref::<basin_core::Error>().map(|e| e.kind)
                == Some(basin_core::ErrorKind::NotFound) =>
        {
            (
                basin_runtime::RuntimeOptions::default(),
                basin_sql::SqlLimits::default(),
            )
        }
        Err(e) => return Err(e),
    };
    let spill_dir = sql.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    let spill_free = basin_service::config::free_space(&spill_dir);
    let mut walls = Walls::probe(options.isolation, &options.disable_walls);
    walls.share_cpu(options.nice, false);
    let root = walls.root;
    let report = Report {
        isolation: walls.isolation.as_str(),
        isolation_set: walls.chosen,
        functions_run: walls.check("-", false).is_ok(),
        walls: walls
            .walls
            .iter()
            .map(|w| WallRow {
                wall: w.name,
                in_force: w.state.is_ok(),
                how: match &w.state {
                    Ok(how) | Err(how) => how,
                },
                guards: w.guards,
            })
            .collect(),
        max_processes: options.max_processes,
        max_open_files: options.max_open_files,
        nice: options.nice,
        cpu_share_in_force: walls.cpu.is_ok(),
        cpu_share: match &walls.cpu {
            Ok(how) | Err(how) => how,
        },
        max_folder_size_bytes: options.max_folder_size,
        running_as_root: root,
        spill_dir: spill_dir.display().to_string(),
        spill_limit_bytes: sql.spill_limit,
        spill_free_bytes: spill_free,
    };
    let rows = report
        .walls
        .iter()
        .map(|w| {
            vec![
                w.wall.to_string(),
                if w.in_force { "yes" } else { "MISSING" }.to_string(),
                w.how.to_string(),
                w.guards.to_string(),
            ]
        })
        .collect();
    print(
        args.format.format,
        &report,
        &["wall", "in force", "how (or why not)", "what it keeps"],
        rows,
    )?;
    if args.format.format == ListFormat::Table {
        status(walls.line_without_note());
        status(format!(
            "limits per invocation: {} processes and threads, {} open files per process, {} in its folder (one file and all), memory as each function declares",
            options.max_processes,
            options.max_open_files,
            bytes(options.max_folder_size),
        ));
        status(match &walls.cpu {
            Ok(how) => format!(
                "CPU: functions run {} steps of nice below Basin; {how}",
                options.nice
            ),
            Err(why) => format!(
                "CPU: functions run {} steps of nice below Basin, per process only ({why}): \
                 where the kernel weighs sessions apart (autogroup), each invocation, a session \
                 of its own, competes with Basin as an equal",
                options.nice
            ),
        });
        status(format!(
            "SQL: queries spill to {} up to {} (`[sql] spill_dir`, `spill_limit`); {} free there now",
            spill_dir.display(),
            bytes(sql.spill_limit),
            spill_free.map_or("unknown".to_string(), bytes),
        ));
        if root {
            status(
                "note: Basin runs as root; functions keep root's ownership of files inside their walls \
                 (only the world-readable part of /etc is open to them); run Basin as an unprivileged user",
            );
        }
    }
    Ok(())
}
