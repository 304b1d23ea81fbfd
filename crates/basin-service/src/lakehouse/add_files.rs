//! `basin table add-files`: Parquet files that already lie somewhere become part of a table,
//! in one commit, without being copied (see `basin_table::add_files` for what the manifests
//! get). Files outside the warehouse must lie in a folder the operator named in
//! `[warehouse] external_locations`: a table's readers read what it names, so which files
//! may be named is the operator's choice, and garbage collection, which lists only the
//! warehouse, never deletes them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use basin_catalog::{CommitRequest, Content, Key};
use basin_core::{Error, Result};
use basin_table::add_files::{self, FileToAdd, NAME_MAPPING};
use basin_table::iceberg::TableUpdate;
use basin_table::{TableChange, TableUpdates};
use serde::{Deserialize, Serialize};

use crate::lakehouse::tables::Tables;

/// What `basin table add-files` did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddFilesReport {
    pub table: String,
    pub branch: String,
    pub commit: String,
    pub created: bool,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    /// The Hive partition keys the files' folders gave.
    pub partitioned_by: Vec<String>,
}

impl Tables<'_> {
    /// Adds the Parquet files `sources` name (files, folders searched recursively, globs;
    /// local paths for a local warehouse, `s3://` URLs for an S3 one) to table `name` on
    /// `branch`, creating it from the first file when it does not exist.
    pub async fn add_files(
        &self,
        name: &str,
        sources: &[String],
        branch: Option<&str>,
    ) -> Result<AddFilesReport> {
        let lake = self.lake();
        let key = Key::table(name)?;
        let at = lake.resolve(branch).await?;
        let branch = at.writable_branch()?.to_string();
        let warehouse = lake.warehouse();
        let mut files = Vec::new();
        for source in sources {
            files.extend(self.files_at(source).await?);
        }
        for file in &files {
            if !warehouse.may_name(&file.location) {
                return Err(Error::invalid(format!(
                    "{} lies outside the warehouse and its external locations",
                    file.location
                ))
                .with_hint(format!(
                    "name its folder in basin.toml: [warehouse] external_locations = [\"{}\"]",
                    parent_of(&file.location)
                )));
            }
        }
        let footers = add_files::read_footers(warehouse.file_io(), files).await?;
        let tables = lake.iceberg_tables();
        let existing = match lake.catalog().content(&at, &key).await? {
            Some(Content::Table { metadata_location }) => {
                Some(tables.load_from(&key, &metadata_location).await?)
            }
            Some(Content::Namespace { .. }) => {
                return Err(Error::invalid(format!(
                    "`{key}` is a namespace, not a table"
                )));
            }
            None => None,
        };
        let staged = match existing {
            Some(table) => {
                add_files::check_files(&table, &footers)?;
                already_there(&table, &footers).await?;
                let table = self.with_name_mapping(&branch, &key, table).await?;
                basin_table::Tables::stage_existing(table)
            }
            None => {
                let (schema, spec) = add_files::new_table_shape(&footers)?;
                let mapping = add_files::name_mapping(&schema);
                tables
                    .stage_create(
                        &key,
                        schema,
                        spec,
                        HashMap::from([(NAME_MAPPING.to_string(), mapping)]),
                    )
                    .await?
            }
        };
        let data_files = add_files::data_files(&staged.table, &footers)?;
        let rows = data_files.iter().map(|f| f.record_count()).sum();
        let bytes = data_files.iter().map(|f| f.file_size_in_bytes()).sum();
        let partitioned_by = footers
            .first()
            .map(|f| f.file.partition.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default();
        let count = data_files.len();
        let at = lake.resolve(Some(&branch)).await?;
        let request = CommitRequest::new(
            &branch,
            at.commit.clone(),
            format!(
                "add {count} file{} to {key} in place",
                if count == 1 { "" } else { "s" }
            ),
        );
        let created = staged.created;
        let outcome = tables
            .commit_change(&key, staged, TableChange::Append(data_files), request)
            .await?;
        Ok(AddFilesReport {
            table: key.to_string(),
            branch,
            commit: outcome.commit.id.to_string(),
            created,
            files: count,
            rows,
            bytes,
            partitioned_by,
        })
    }

    /// `table` with a name mapping for its current columns, committed first on its own when
    /// it lacks one: a mapping alone changes nothing any reader sees (files with field ids
    /// ignore it), and the files added next need it to be read at all.
    async fn with_name_mapping(
        &self,
        branch: &str,
        key: &Key,
        table: basin_table::iceberg::table::Table,
    ) -> Result<basin_table::iceberg::table::Table> {
        let mapping = add_files::name_mapping(table.metadata().current_schema());
        if table.metadata().properties().get(NAME_MAPPING) == Some(&mapping) {
            return Ok(table);
        }
        let change = TableUpdates {
            key: key.clone(),
            requirements: Vec::new(),
            updates: vec![TableUpdate::SetProperties {
                updates: HashMap::from([(NAME_MAPPING.to_string(), mapping)]),
            }],
        };
        let mut committed = self.commit_updates(Some(branch), &[change]).await?;
        committed
            .pop()
            .ok_or_else(|| Error::internal("the name mapping's commit returned no table"))
    }

    /// The Parquet files `source` names, with the Hive partition values of the folders below
    /// the one it names.
    async fn files_at(&self, source: &str) -> Result<Vec<FileToAdd>> {
        let wildcard = source.contains(['*', '?', '[']);
        let (root, found) = if source.starts_with("s3://") {
            if !self.lake().warehouse().is_s3() {
                return Err(Error::invalid(format!(
                    "`{source}`: this lakehouse's warehouse is a local folder, whose storage reads no S3 object"
                ))
                .with_hint("copy the objects in with `basin import`, or add local files"));
            }
            let root = fixed_part(source);
            let listed = self.lake().warehouse().list_s3_objects(&root).await?;
            let found = if wildcard {
                let pattern = glob::Pattern::new(source)
                    .map_err(|e| Error::invalid(format!("bad glob `{source}`: {e}")))?;
                listed.into_iter().filter(|l| pattern.matches(l)).collect()
            } else if listed.iter().any(|l| l == source) {
                vec![source.to_string()]
            } else {
                // A folder: what lies below it, not beside it (`clicks2/` for `clicks`).
                let folder = format!("{}/", source.trim_end_matches('/'));
                listed
                    .into_iter()
                    .filter(|l| l.starts_with(&folder) && is_data_file(l))
                    .collect()
            };
            (root, found)
        } else {
            if self.lake().warehouse().is_s3() {
                return Err(Error::invalid(format!(
                    "`{source}`: this lakehouse's warehouse is in S3, whose storage reads no local file"
                ))
                .with_hint("upload the files to S3 and add them by their s3:// URLs, or import them with `basin import`"));
            }
            local_files(source, wildcard)?
        };
        if found.is_empty() {
            return Err(Error::not_found(format!("no Parquet file at `{source}`"))
                .with_hint("give a Parquet file, a folder holding some, or a glob like 'lake/**/*.parquet'"));
        }
        // Partition folders named in the path itself count too (`clicks/year=2024/`).
        let mut root = root.as_str();
        while let Some((above, last)) = root.rsplit_once('/')
            && last.contains('=')
        {
            root = above;
        }
        Ok(found
            .into_iter()
            .map(|location| FileToAdd {
                partition: add_files::hive_partition(root, &location),
                location,
            })
            .collect())
    }
}

/// Local files: the folder below which partition folders count, and the files.
fn local_files(source: &str, wildcard: bool) -> Result<(String, Vec<String>)> {
    // Real paths, links resolved: what the table names is checked against the external
    // locations as it is, not by a name that points elsewhere.
    let real = |p: &Path| {
        std::fs::canonicalize(p)
            .map(|p| p.display().to_string())
            .map_err(|e| Error::io(format!("cannot resolve {}", p.display())).with_source(e))
    };
    if wildcard {
        let fixed = fixed_part(source);
        let rest = source[fixed.len()..].trim_start_matches('/');
        let root = real(Path::new(if fixed.is_empty() { "." } else { &fixed }))?;
        let pattern = format!("{root}/{rest}");
        let mut found = Vec::new();
        for path in glob::glob(&pattern)
            .map_err(|e| Error::invalid(format!("bad glob `{source}`: {e}")))?
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
        {
            found.push(real(&path)?);
        }
        found.sort();
        return Ok((root, found));
    }
    let path = Path::new(source);
    if path.is_file() {
        let text = real(path)?;
        return Ok((parent_of(&text), vec![text]));
    }
    if !path.is_dir() {
        return Err(Error::not_found(format!("`{source}` does not exist"))
            .with_hint("give a Parquet file, a folder holding some, or a glob"));
    }
    let text = real(path)?;
    let path = PathBuf::from(&text);
    let mut found = Vec::new();
    let mut folders = vec![path.clone()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| Error::io(format!("cannot list {}", folder.display())).with_source(e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Hidden files and a writer's markers (`_SUCCESS`, `_delta_log/`) are no data.
            if name.starts_with(['.', '_']) {
                continue;
            }
            let entry_path: PathBuf = entry.path();
            if entry_path.is_dir() {
                folders.push(entry_path);
            } else if is_data_file(&name) {
                found.push(real(&entry_path)?);
            }
        }
    }
    found.sort();
    Ok((text, found))
}

fn is_data_file(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.to_ascii_lowercase().ends_with(".parquet") && !file.starts_with(['.', '_'])
}

/// The part of a glob before its first segment with a wildcard.
fn fixed_part(pattern: &str) -> String {
    let segments: Vec<&str> = pattern
        .split('/')
        .take_while(|s| !s.contains(['*', '?', '[']))
        .collect();
    segments.join("/")
}

fn parent_of(location: &str) -> String {
    Path::new(location)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Fails if one of the files is part of the table already: its rows would count twice.
async fn already_there(
    table: &basin_table::iceberg::table::Table,
    footers: &[add_files::Footer],
) -> Result<()> {
    let live: HashSet<String> = basin_table::live_data_files(table)
        .await
        .map_err(basin_table::from_iceberg("cannot list the table's files"))?
        .into_keys()
        .collect();
    if let Some(footer) = footers.iter().find(|f| live.contains(&f.file.location)) {
        return Err(Error::invalid(format!(
            "{} is part of `{}` already",
            footer.file.location,
            table.identifier()
        ))
        .with_hint("its rows would count twice: leave it out"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_s_fixed_part_is_the_folder_partitions_count_below() {
        assert_eq!(fixed_part("/lake/events/*/*.parquet"), "/lake/events");
        assert_eq!(
            fixed_part("s3://b/events/year=*/x.parquet"),
            "s3://b/events"
        );
        assert!(is_data_file("s3://b/x/part-0.PARQUET"));
        assert!(!is_data_file("/x/_SUCCESS"));
    }
}
