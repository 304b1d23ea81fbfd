//! Branches, tags, checkout, history and differences: the `Refs` handle, which `merge.rs`
//! adds merging to.

use basin_catalog::{Commit, CommitId, DiffEntry, HistoryCut, Ref, RefKind, Resolved};
use basin_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::Lakehouse;

/// The branch a pipeline run works on is `run/ID`.
pub(crate) const RUN_BRANCH_PREFIX: &str = "run/";

/// A branch or tag as listed by `basin branch ls` / `basin tag ls`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefInfo {
    pub name: String,
    pub kind: RefKind,
    pub head: CommitId,
    pub current: bool,
    pub message: String,
    pub created_at_ms: i64,
}

/// A commit as shown by `basin log`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: CommitId,
    pub parent: Option<CommitId>,
    pub merge_parent: Option<CommitId>,
    pub author: String,
    /// The door the commit came through (`api`, `iceberg-rest`, `postgres`, `local`, ...);
    /// `None` for commits older than doors being recorded.
    #[serde(default)]
    pub door: Option<String>,
    pub message: String,
    pub created_at_ms: i64,
    pub changed: Vec<String>,
    /// On the oldest commit left of this history, when retention removed the ones before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_cut: Option<HistoryCut>,
}

impl From<Commit> for LogEntry {
    fn from(c: Commit) -> Self {
        Self {
            changed: c.operations.iter().map(|o| o.key().to_string()).collect(),
            door: c.properties.get(basin_catalog::DOOR_PROPERTY).cloned(),
            id: c.id,
            parent: c.parent,
            merge_parent: c.merge_parent,
            author: c.author,
            message: c.message,
            created_at_ms: c.created_at_ms,
            history_cut: None,
        }
    }
}

/// Branches and tags, checkout, history, differences and merges (`basin branch`, `tag`,
/// `checkout`, `log`, `diff`, `merge`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::refs`].
#[derive(Clone, Copy)]
pub struct Refs<'a> {
    pub(super) lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Branches, tags, history, differences and merges: see [`Refs`].
    pub fn refs(&self) -> Refs<'_> {
        Refs { lake: self }
    }
}

impl Refs<'_> {
    /// Makes `branch` the current branch.
    pub async fn checkout(&self, branch: &str) -> Result<Resolved> {
        let resolved = self.lake.catalog().resolve(branch).await?;
        resolved.writable_branch()?;
        let path = self.lake.head_file();
        // Write-then-rename so a crash never leaves a half-written HEAD.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{branch}\n"))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("cannot write {}", path.display())).with_source(e))?;
        Ok(resolved)
    }

    pub async fn list(&self, kind: RefKind) -> Result<Vec<RefInfo>> {
        let current = self.lake.current_branch();
        let mut out = Vec::new();
        for r in self
            .lake
            .catalog()
            .list_refs()
            .await?
            .into_iter()
            .filter(|r| r.kind == kind)
        {
            let commit = self.lake.catalog().store().get_commit(&r.head).await?;
            out.push(RefInfo {
                current: r.kind == RefKind::Branch && r.name == current,
                message: commit
                    .as_ref()
                    .map(|c| c.message.clone())
                    .unwrap_or_default(),
                created_at_ms: commit.map(|c| c.created_at_ms).unwrap_or_default(),
                name: r.name,
                kind: r.kind,
                head: r.head,
            });
        }
        Ok(out)
    }

    /// Creates a branch from `from` (default: the current branch). Copies no data.
    pub async fn create_branch(&self, name: &str, from: Option<&str>) -> Result<Ref> {
        let from = self.lake.resolve(from).await?;
        self.lake.catalog().create_branch(name, &from).await
    }

    pub async fn delete_branch(&self, name: &str) -> Result<()> {
        self.lake
            .catalog()
            .delete_branch(name, Some(&self.lake.current_branch()))
            .await
    }

    pub async fn create_tag(&self, name: &str, at: Option<&str>) -> Result<Ref> {
        let at = self.lake.resolve(at).await?;
        self.lake.catalog().create_tag(name, &at).await
    }

    pub async fn delete_tag(&self, name: &str) -> Result<()> {
        self.lake.catalog().delete_tag(name).await
    }

    pub async fn log(&self, at: Option<&str>, limit: usize) -> Result<Vec<LogEntry>> {
        let at = self.lake.resolve(at).await?;
        let mut entries: Vec<LogEntry> = self
            .lake
            .catalog()
            .log(&at, limit)
            .await?
            .into_iter()
            .map(LogEntry::from)
            .collect();
        if entries.len() < limit
            && let Some(last) = entries.last_mut()
        {
            last.history_cut = self.lake.catalog().store().history_cut(&last.id).await?;
        }
        Ok(entries)
    }

    pub async fn diff(&self, from: &str, to: &str) -> Result<Vec<DiffEntry>> {
        let (a, b) = (
            self.lake.catalog().resolve(from).await?,
            self.lake.catalog().resolve(to).await?,
        );
        self.lake.catalog().diff(&a, &b).await
    }

    /// What `diff` says, with each table's files and rows added and removed (read from the
    /// manifests of both sides: a file both read is neither) and its snapshot on each side.
    pub async fn diff_tables(&self, from: &str, to: &str) -> Result<Vec<TableDiff>> {
        let entries = self.diff(from, to).await?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let side = |c: &Option<basin_catalog::Content>| {
                c.as_ref()
                    .and_then(|c| c.metadata_location())
                    .map(str::to_string)
            };
            let (before, after) = (side(&entry.from), side(&entry.to));
            let mut diff = TableDiff {
                entry,
                files_added: 0,
                files_removed: 0,
                rows_added: 0,
                rows_removed: 0,
                from_snapshot: None,
                to_snapshot: None,
            };
            let mut files: [std::collections::HashMap<String, u64>; 2] = Default::default();
            for (i, location) in [before, after].into_iter().enumerate() {
                let Some(location) = location else { continue };
                let table = self
                    .lake
                    .iceberg_tables()
                    .load_from(&diff.entry.key, &location)
                    .await?;
                let snapshot = table.metadata().current_snapshot_id();
                if i == 0 {
                    diff.from_snapshot = snapshot.map(|s| s.to_string());
                } else {
                    diff.to_snapshot = snapshot.map(|s| s.to_string());
                }
                files[i] = basin_table::live_data_files(&table).await.map_err(|e| {
                    Error::io(format!(
                        "reading the manifests of `{}`: {e}",
                        diff.entry.key
                    ))
                })?;
            }
            for (path, rows) in &files[1] {
                if !files[0].contains_key(path) {
                    diff.files_added += 1;
                    diff.rows_added += rows;
                }
            }
            for (path, rows) in &files[0] {
                if !files[1].contains_key(path) {
                    diff.files_removed += 1;
                    diff.rows_removed += rows;
                }
            }
            out.push(diff);
        }
        Ok(out)
    }
}

/// One entry of a diff, with its table's data files and rows on each side (zero for
/// namespaces). Snapshot ids are strings: they pass 2^53.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableDiff {
    #[serde(flatten)]
    pub entry: DiffEntry,
    pub files_added: u64,
    pub files_removed: u64,
    pub rows_added: u64,
    pub rows_removed: u64,
    pub from_snapshot: Option<String>,
    pub to_snapshot: Option<String>,
}
