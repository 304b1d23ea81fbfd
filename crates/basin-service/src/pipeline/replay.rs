//! `basin runs replay`: the code and parameters a run stored, run again against the commit
//! it read, and each stored output compared with the original, row for row.

use arrow::array::RecordBatch;
use arrow::row::{RowConverter, SortField};
use basin_core::{Error, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Pipelines;
use super::{RunProgress, RunRequest, RunSink};

/// One stored output, compared.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayedOutput {
    pub model: String,
    pub table: String,
    pub original_rows: u64,
    pub replayed_rows: u64,
    pub identical: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    pub original: String,
    pub replay: String,
    pub read_commit: String,
    pub outputs: Vec<ReplayedOutput>,
    pub identical: bool,
    /// The branches the replay left for a look (when outputs differ, or asked to keep them).
    pub kept_branches: Vec<String>,
}

impl Pipelines<'_> {
    /// Re-runs run `id`'s stored code and parameters on the commit it read (as a dry run on
    /// a branch `replay/<id>` cut there) and compares every stored output. The replay's
    /// branches are deleted afterwards when every output is identical, unless `keep_branch`.
    pub async fn replay_run(
        &self,
        id: &str,
        keep_branch: bool,
        sink: RunSink,
        progress: RunProgress,
    ) -> Result<ReplayReport> {
        let original = self.show_run(id).await?;
        let dir = tempfile::Builder::new()
            .prefix("basin-replay-")
            .tempdir()
            .map_err(|e| Error::io_with("cannot create a temporary folder", e))?;
        for (path, text) in &original.code {
            let target = dir.path().join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io_with(parent.display(), e))?;
            }
            std::fs::write(&target, text).map_err(|e| Error::io_with(target.display(), e))?;
        }
        let branch = format!("replay/{}", original.id);
        let read = self
            .lake
            .catalog()
            .resolve(&format!("{}@{}", original.target, original.read_commit))
            .await
            .map_err(|e| match e.kind() {
                basin_core::ErrorKind::NotFound => e.with_hint(format!(
                    "the commit run {} read may have left the catalog's history ([maintenance] \
                     keep_history); tag a run's commit to replay it later",
                    original.id
                )),
                _ => e,
            })?;
        if self.lake.catalog().resolve(&branch).await.is_err() {
            self.lake.catalog().create_branch(&branch, &read).await?;
        }
        let params = original
            .params
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect();
        let request = RunRequest {
            dir: dir.path().to_path_buf(),
            branch: Some(branch.clone()),
            params,
            dry_run: true,
            no_cache: true,
            full_refresh: original.full_refresh,
            keep_branch: true,
        };
        let replay = self.run(request, sink, progress).await?;
        // Where the original outputs are: its merge commit; the commit it read when the merge
        // changed nothing (every output was already there); else its own branch.
        let original_at = match (&original.merged_commit, original.status.as_str()) {
            (Some(c), _) => format!("{}@{c}", original.target),
            (None, "succeeded") => format!("{}@{}", original.target, original.read_commit),
            (None, _) => original.branch.clone(),
        };
        let mut outputs = Vec::new();
        for model in original.models.iter().filter(|m| m.table.is_some()) {
            let table = model.table.clone().expect("filtered");
            let (original_rows, a) = self.fingerprint(&table, &original_at).await?;
            let (replayed_rows, b) = self.fingerprint(&table, &replay.branch).await?;
            outputs.push(ReplayedOutput {
                model: model.name.clone(),
                table,
                original_rows,
                replayed_rows,
                identical: original_rows == replayed_rows && a == b,
            });
        }
        let identical = outputs.iter().all(|o| o.identical);
        let branches = [replay.branch.clone(), branch];
        let kept_branches = if keep_branch || !identical {
            branches.to_vec()
        } else {
            for b in &branches {
                self.lake.catalog().delete_branch(b, None).await?;
            }
            Vec::new()
        };
        Ok(ReplayReport {
            original: original.id,
            replay: replay.id,
            read_commit: original.read_commit,
            identical,
            outputs,
            kept_branches,
        })
    }

    /// The row count and an order-independent digest of a table's rows at `at`: the sum of
    /// each row's hash (rows in Arrow's row format), so equal multisets of rows match.
    async fn fingerprint(&self, table: &str, at: &str) -> Result<(u64, [u64; 4])> {
        let result = self
            .lake
            .query(&format!("SELECT * FROM {table}"), Some(at), None)
            .await?;
        let fields: Vec<SortField> = result
            .schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter =
            RowConverter::new(fields).map_err(|e| Error::internal(format!("{table}: {e}")))?;
        let mut sum = [0u64; 4];
        let mut rows = 0u64;
        for batch in &result.batches {
            let converted = converter
                .convert_columns(RecordBatch::columns(batch))
                .map_err(|e| Error::internal(format!("{table}: {e}")))?;
            for row in converted.iter() {
                let digest = Sha256::digest(row.as_ref());
                for (i, chunk) in digest.chunks(8).enumerate() {
                    let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                    sum[i] = sum[i].wrapping_add(word);
                }
                rows += 1;
            }
        }
        Ok((rows, sum))
    }
}
