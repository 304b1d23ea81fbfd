use basin_service::{CompactReport, ExpireReport};
use basin_table::TableSummary;

use crate::lake::Context;
use crate::output::{FormatArg, ListFormat, print, status, time};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List tables
    Ls {
        /// A branch, tag or REF@COMMIT (default: the current branch)
        #[arg(long = "ref", value_name = "REF")]
        at: Option<String>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Show a table: schema, partitioning, snapshots, files, rows and bytes
    Show {
        /// NAMESPACE.TABLE
        table: String,
        #[arg(long = "ref", value_name = "REF")]
        at: Option<String>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Drop a table from a branch (other refs keep it)
    Rm {
        table: String,
        #[arg(long, value_name = "BRANCH")]
        branch: Option<String>,
    },
    /// Rewrite a table's small data files into files of the target size (the same rows), in
    /// one commit; files appended meanwhile stay. See docs/maintenance.md
    #[command(
        after_help = "Small files are those under 3/4 of the target size; full files are left alone.

Examples:
  basin table compact sales.orders --dry-run          # how many files would be rewritten
  basin table compact sales.orders --target-file-size 256MiB
  basin table compact sales.orders --sort-by order_date,customer_id   # scans on them prune files
  basin table compact sales.orders --branch dev --format json"
    )]
    Compact {
        /// NAMESPACE.TABLE
        table: String,
        #[arg(long, value_name = "BRANCH")]
        branch: Option<String>,
        /// Files roll over at this size (default: the table's write.target-file-size-bytes,
        /// else 128MiB)
        #[arg(long, value_name = "SIZE")]
        target_file_size: Option<String>,
        /// Sort the rows by these columns (comma-separated; ascending, nulls first), rewriting
        /// every file, and keep it as the table's sort order
        #[arg(long, value_name = "COL,...", value_delimiter = ',')]
        sort_by: Vec<String>,
        /// Say how many files there are and would be; change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Drop a table's old snapshots from a branch (the rows stay), in one commit; basin gc
    /// then frees the files only they read. See docs/maintenance.md
    #[command(
        after_help = "Which snapshots go: those older than --older-than, except the newest
--retain-last of the current snapshot's ancestry (the current snapshot always stays) and any
snapshot a tag reads. Without the flags, the table's properties
history.expire.max-snapshot-age-ms and history.expire.min-snapshots-to-keep decide, then
basin.toml's [maintenance] keep_snapshots (default \"7d\") and keep_last (default 1).

Expiry deletes no file by itself: the branch's earlier commits still read the old snapshots.
basin gc deletes their files once [maintenance] keep_history (default 30 days) has removed
those commits from the catalog's history.

Examples:
  basin table expire sales.orders --dry-run              # which snapshots would go
  basin table expire sales.orders --older-than 1d --retain-last 5
  basin table expire sales.orders --branch dev --format json"
    )]
    Expire {
        /// NAMESPACE.TABLE
        table: String,
        #[arg(long, value_name = "BRANCH")]
        branch: Option<String>,
        /// Expire snapshots older than this (e.g. 12h, 7d)
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
        /// Keep at least this many of the newest snapshots (at least 1)
        #[arg(long, value_name = "N")]
        retain_last: Option<usize>,
        /// Say which snapshots would go; change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Add Parquet files to a table where they lie, without copying (creating the table
    /// from the first file if it does not exist)
    #[command(
        after_help = "Each file's columns must be the table's (by name, with the same types); its
statistics go into the manifests, so queries skip files as they skip Basin's own. Folders named
key=value (Hive style: year=2024/month=01/) below the folder given become identity partitions,
with their values as columns. All files land in one commit.

Files outside the warehouse are read where they lie and never deleted by gc: their folder must
be named in basin.toml first, as tables may name only files the operator allows:
  [warehouse]
  external_locations = [\"/data/lake\"]

A local warehouse adds local files; an S3 one adds s3:// objects (a URL, a prefix, or a glob).

Examples:
  basin table add-files sales.orders /data/lake/orders/              # every .parquet below
  basin table add-files events.clicks '/data/lake/clicks/year=*/month=*/*.parquet'
  basin table add-files sales.orders s3://old-lake/orders/ --branch import"
    )]
    AddFiles {
        /// NAMESPACE.TABLE
        table: String,
        /// Parquet files, folders (searched recursively) or globs
        #[arg(required = true)]
        paths: Vec<String>,
        #[arg(long, value_name = "BRANCH")]
        branch: Option<String>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Make an existing Iceberg table a table of the lakehouse, without copying: its
    /// metadata.json, whose files must lie in the warehouse or its external locations
    #[command(
        after_help = "The table keeps its snapshots and files; Basin reads and writes it as any
other table from then on (branches, merges, SQL, compaction, expiry, gc). Its data files must
be inside the lakehouse's warehouse, or in a folder named in `[warehouse] external_locations`
(which gc never deletes from): copy or write the table there first.

Examples:
  basin table register sales.orders .basin/warehouse/sales/orders/metadata/00003-ab12.metadata.json
  basin table register sales.orders s3://lake/warehouse/sales/orders/metadata/v3.metadata.json --branch dev
  basin table register sales.orders NEW.metadata.json --overwrite   # point it at newer metadata"
    )]
    Register {
        /// NAMESPACE.TABLE
        table: String,
        /// The table's metadata file (a path or an s3:// URL)
        metadata_location: String,
        #[arg(long, value_name = "BRANCH")]
        branch: Option<String>,
        /// Replace a table of that name on the branch
        #[arg(long)]
        overwrite: bool,
    },
    /// Put a table back as it was at another ref, in a new commit
    Revert {
        table: String,
        /// The ref whose version of the table to restore (a tag, branch or REF@COMMIT)
        #[arg(long, value_name = "REF")]
        to: String,
        #[arg(long, value_name = "BRANCH")]
        branch: Option<String>,
    },
}

pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    match cmd {
        Command::Ls { at, format } => {
            let tables = lake.list_tables(at.as_deref()).await?;
            let rows = tables.iter().map(|t| vec![t.table.clone()]).collect();
            print(format.format, &tables, &["table"], rows)
        }
        Command::Show { table, at, format } => {
            let summary = lake.show_table(&table, at.as_deref()).await?;
            if format.format == ListFormat::Json {
                return print(format.format, &summary, &[], vec![]);
            }
            print_summary(&summary)
        }
        Command::Rm { table, branch } => {
            let commit = lake.drop_table(&table, branch.as_deref()).await?;
            status(format!("Dropped `{table}` (commit {})", commit.id.short()));
            Ok(())
        }
        Command::Compact {
            table,
            branch,
            target_file_size,
            sort_by,
            dry_run,
            format,
        } => {
            let options = basin_service::CompactOptions {
                branch,
                dry_run,
                sort_by: sort_by.into_iter().map(|c| c.trim().to_string()).collect(),
                target_file_size: target_file_size
                    .as_deref()
                    .map(basin_core::units::parse_size)
                    .transpose()?,
            };
            let report = lake
                .local("table compact")?
                .maintenance()
                .compact_table(&table, &options)
                .await?;
            crate::output::done(format.format, &report, || compacted(&report))
        }
        Command::Expire {
            table,
            branch,
            older_than,
            retain_last,
            dry_run,
            format,
        } => {
            let older_than = older_than
                .map(|text| basin_core::units::parse_duration(&text))
                .transpose()
                .map_err(|e| e.with_hint("write e.g. --older-than 12h or 7d"))?;
            let options = basin_service::ExpireOptions {
                branch,
                older_than,
                retain_last,
                dry_run,
            };
            let report = lake
                .local("table expire")?
                .maintenance()
                .expire_table(&table, &options)
                .await?;
            crate::output::done(format.format, &report, || expired(&report))
        }
        Command::Register {
            table,
            metadata_location,
            branch,
            overwrite,
        } => {
            let location = match metadata_location.contains("://") {
                true => metadata_location,
                false => std::path::absolute(&metadata_location)?
                    .display()
                    .to_string(),
            };
            lake.local("table register")?
                .tables()
                .register(&table, &location, branch.as_deref(), overwrite)
                .await?;
            status(format!("Registered `{table}` at {location}"));
            Ok(())
        }
        Command::AddFiles {
            table,
            paths,
            branch,
            format,
        } => add_files(&lake, &table, &paths, branch.as_deref(), format.format).await,
        Command::Revert { table, to, branch } => {
            let commit = lake
                .local("table revert")?
                .tables()
                .revert(&table, &to, branch.as_deref())
                .await?;
            status(format!(
                "Reverted `{table}` to its state at `{to}` (commit {})",
                commit.id.short()
            ));
            Ok(())
        }
    }
}

/// `basin table add-files`: the report, as a line for people or JSON.
async fn add_files(
    lake: &crate::lake::Lake,
    table: &str,
    paths: &[String],
    branch: Option<&str>,
    format: ListFormat,
) -> anyhow::Result<()> {
    let report = lake
        .local("table add-files")?
        .tables()
        .add_files(table, paths, branch)
        .await?;
    crate::output::done(format, &report, || {
        format!(
            "Added {} file{} ({} rows, {}) to `{}`{} on `{}` in place{}, commit {}",
            report.files,
            if report.files == 1 { "" } else { "s" },
            report.rows,
            basin_core::units::format_size(report.bytes),
            report.table,
            if report.created { " (created)" } else { "" },
            report.branch,
            match report.partitioned_by.is_empty() {
                true => String::new(),
                false => format!(", partitioned by {}", report.partitioned_by.join(", ")),
            },
            &report.commit[..12.min(report.commit.len())]
        )
    })
}

/// `basin table show` for people: the table, its columns and its snapshots.
fn print_summary(summary: &TableSummary) -> anyhow::Result<()> {
    println!("table      {}", summary.table);
    println!("location   {}", summary.location);
    println!("metadata   {}", summary.metadata_location);
    println!(
        "partition  {}",
        if summary.partition_spec.is_empty() {
            "(none)".to_string()
        } else {
            summary.partition_spec.join(", ")
        }
    );
    if !summary.sort_order.is_empty() {
        println!("sorted by  {}", summary.sort_order.join(", "));
    }
    println!("rows       {}", summary.rows);
    println!("files      {}", summary.data_files);
    println!("bytes      {}", summary.bytes);
    println!();
    let columns = summary
        .columns
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.data_type.clone(),
                (!c.required).to_string(),
            ]
        })
        .collect();
    print(
        ListFormat::Table,
        &(),
        &["column", "type", "nullable"],
        columns,
    )?;
    let snapshots = summary
        .snapshots
        .iter()
        .map(|s| {
            vec![
                s.snapshot_id.to_string(),
                time(s.timestamp_ms),
                s.operation.clone(),
                s.added_records.map(|r| r.to_string()).unwrap_or_default(),
                s.total_records.map(|r| r.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    print(
        ListFormat::Table,
        &(),
        &["snapshot", "time", "operation", "added rows", "total rows"],
        snapshots,
    )
}

/// What a compaction did (or would do), in one line.
fn compacted(report: &CompactReport) -> String {
    match (&report.commit, report.dry_run) {
        (Some(commit), _) => format!(
            "Compacted `{}` on `{}`: {} small files into {} ({} rows; {} files now) in {:.1}s, commit {}",
            report.table,
            report.branch,
            report.files_rewritten,
            report.files_after + report.files_rewritten - report.files_before,
            report.rows,
            report.files_after,
            report.seconds,
            &commit[..12.min(commit.len())]
        ),
        (None, true) if report.files_rewritten > 0 => format!(
            "Dry run: `{}` has {} files, {} of them small ({} rows); compacting would leave {}",
            report.table,
            report.files_before,
            report.files_rewritten,
            report.rows,
            report.files_after
        ),
        (None, _) => format!(
            "`{}` has {} file(s), at most one under 3/4 of {}: nothing to compact",
            report.table,
            report.files_before,
            basin_core::units::format_size(report.target_file_size)
        ),
    }
}

/// What an expiry did (or would do), in one line.
fn expired(report: &ExpireReport) -> String {
    let policy = match report.older_than_ms {
        Some(s) => format!(
            "older than {}, beyond the newest {}",
            basin_core::units::format_duration(std::time::Duration::from_millis(s)),
            report.retain_last
        ),
        None => "none: snapshots are kept forever".to_string(),
    };
    let tags = match report.kept_for_tags {
        0 => String::new(),
        n => format!("; {n} kept because a tag reads them"),
    };
    match (&report.commit, report.dry_run) {
        (Some(commit), _) => format!(
            "Expired {} of {} snapshots of `{}` on `{}` ({policy}){tags}, commit {}",
            report.snapshots_expired,
            report.snapshots_before,
            report.table,
            report.branch,
            &commit[..12.min(commit.len())]
        ),
        (None, true) => format!(
            "Dry run: would expire {} of {} snapshots of `{}` on `{}` ({policy}){tags}",
            report.snapshots_expired, report.snapshots_before, report.table, report.branch
        ),
        (None, false) => format!(
            "No snapshot of `{}` on `{}` to expire ({} snapshots; policy: {policy}){tags}",
            report.table, report.branch, report.snapshots_before
        ),
    }
}
