//! `basin table compact`: a table's live data files rewritten into as few files as the target
//! size allows, the same rows, in one commit: an Iceberg `replace` snapshot.
//!
//! The rows are read through iceberg's scan of the branch head's snapshot and written with
//! Basin's writer (its partitioning, row groups and 128 MiB files). The commit swaps exactly
//! the files that were read: files another writer appended meanwhile stay (the change is
//! staged again on the new head, as every Basin write is); if a file that was read is gone
//! (another compaction, a replace), the compaction stops with a conflict and changes nothing.
//!
//! Not yet: tables with delete files (refused by name), sorting on write (`--sort-by`), and
//! choosing only the small files of a big table (every live file is rewritten).

use std::collections::HashSet;
use std::time::Instant;

use basin_catalog::{CommitRequest, Error, Key, Result};
use basin_table::{TableChange, TableWriter, Tables, live_data_files};
use futures::TryStreamExt;
use serde::Serialize;

use crate::Lakehouse;

/// What a compaction did (or, in a dry run, would do).
#[derive(Clone, Debug, Serialize)]
pub struct CompactReport {
    pub table: String,
    pub branch: String,
    pub dry_run: bool,
    pub files_before: u64,
    pub files_after: u64,
    pub rows: u64,
    /// The new commit, unless nothing was done.
    pub commit: Option<String>,
    pub seconds: f64,
}

impl Lakehouse {
    /// Compacts `name` on `branch` (default: the current branch); see the module docs.
    pub async fn compact_table(
        &self,
        name: &str,
        branch: Option<&str>,
        dry_run: bool,
    ) -> Result<CompactReport> {
        let clock = Instant::now();
        let key = Key::table(name)?;
        let at = self.resolve(branch).await?;
        let branch = at.writable_branch()?.to_string();
        let table = self.tables().load(&at, &key).await?;
        let live = live_data_files(&table)
            .await
            .map_err(basin_table::from_iceberg(format!(
                "cannot list the files of `{key}`"
            )))?;
        let rows: u64 = live.values().sum();
        let mut report = CompactReport {
            table: key.to_string(),
            branch: branch.clone(),
            dry_run,
            files_before: live.len() as u64,
            files_after: live.len() as u64,
            rows,
            commit: None,
            seconds: 0.0,
        };
        if live.len() <= 1 || dry_run {
            if dry_run && live.len() > 1 {
                report.files_after = 1;
            }
            report.seconds = clock.elapsed().as_secs_f64();
            return Ok(report);
        }
        let context = format!("cannot read `{key}` to compact it");
        let mut batches = table
            .scan()
            .select_all()
            .build()
            .map_err(basin_table::from_iceberg(&context))?
            .to_arrow()
            .await
            .map_err(basin_table::from_iceberg(&context))?;
        let mut writer = TableWriter::new(&table).await?;
        while let Some(batch) = batches
            .try_next()
            .await
            .map_err(basin_table::from_iceberg(&context))?
        {
            writer.write(batch).await?;
        }
        let written = writer.rows();
        let added = writer.close().await?;
        if written != rows {
            return Err(Error::internal(format!(
                "compacting `{key}` read {written} rows where its files hold {rows}; nothing was committed"
            )));
        }
        report.files_after = added.len() as u64;
        let change = TableChange::Compact {
            removed: live.keys().cloned().collect::<HashSet<_>>(),
            added,
        };
        let request = CommitRequest::new(
            &branch,
            at.commit.clone(),
            format!(
                "compact {key}: {} files into {}",
                report.files_before, report.files_after
            ),
        )
        .with_author(&self.settings().author);
        let outcome = self
            .tables()
            .commit_change(&key, Tables::stage_existing(table), change, request)
            .await
            .map_err(|e| {
                e.with_hint(format!(
                    "nothing changed; run `basin table compact {key}` again"
                ))
            })?;
        report.commit = Some(outcome.commit.id.to_string());
        report.seconds = clock.elapsed().as_secs_f64();
        Ok(report)
    }
}
