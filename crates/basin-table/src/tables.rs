//! Table changes as commits on a branch: stage new metadata, move the branch, retry on races.

use std::collections::{HashMap, HashSet};

use basin_catalog::{Catalog, Commit, CommitRequest, Content, Key, Operation, Resolved};
use basin_core::{Error, ErrorKind};
use iceberg::TableUpdate;
use iceberg::spec::{
    DataFile, Operation as SnapshotOperation, Schema, TableMetadataBuilder, Type,
    UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{MetadataLocation, TableCreation, TableIdent};
use serde::Serialize;

use crate::error::{Result, from_iceberg};
use crate::loaded::{LOADED_TABLES, LoadedTables, LoadedTablesStats};
use crate::overwrite::rewrite_updates;
use crate::retry::Backoff;
use crate::staging::{StagingCatalog, stage_updates};
use crate::summary::{self, ColumnSummary, TableSummary};
use crate::warehouse::Warehouse;

/// What a write does to a table's data.
#[derive(Clone, Debug)]
pub enum TableChange {
    /// Add these files in a new `append` snapshot.
    Append(Vec<DataFile>),
    /// Replace every live file with these, in a new `overwrite` snapshot.
    Replace(Vec<DataFile>),
    /// Swap the live files at these paths for files holding the same rows, in a new
    /// `replace` snapshot (compaction); files added meanwhile stay. With a sort order, the
    /// added files are sorted by it, and it becomes the table's default.
    Compact {
        removed: HashSet<String>,
        added: Vec<DataFile>,
        sort_order: Option<iceberg::spec::SortOrder>,
    },
    /// Swap the live files at these paths for `added`, whose rows differ (the files rewritten
    /// without rows updated or deleted at a source, plus the rows' new versions), in one
    /// `overwrite` snapshot; files added meanwhile stay. Unlike a replacement of every file,
    /// it fails as a conflict when a removed file is no longer live (another writer rewrote
    /// it meanwhile): re-staging on the new head would bring its rows back.
    Rewrite {
        removed: HashSet<String>,
        added: Vec<DataFile>,
    },
    /// Drop these snapshots from the table's metadata (expiry); no new snapshot. Those
    /// already gone are skipped; one that became current meanwhile is a conflict.
    Expire(HashSet<i64>),
}

/// A staged table a writer wrote files against, and whether it is new or has a new schema.
pub struct Staged {
    pub table: Table,
    pub created: bool,
    pub schema_changed: bool,
}

/// The result of a committed table write.
#[derive(Clone, Debug, Serialize)]
pub struct WriteOutcome {
    pub commit: Commit,
    pub metadata_location: String,
    #[serde(with = "crate::id_json::option")]
    pub snapshot_id: Option<i64>,
    pub attempts: u32,
}

#[derive(Clone, Debug)]
pub struct Tables {
    catalog: Catalog,
    warehouse: Warehouse,
    loaded: LoadedTables,
    /// Bytes of one metadata file, manifest list or manifest read (`[sql] max_metadata_size`).
    max_metadata: u64,
}

/// The snapshot-summary property naming the source a table's rows come from; the source's
/// position is in `basin.source.*` (see basin-ingest's change data capture).
pub const SOURCE_PROPERTY: &str = "basin.source";

/// Stages a snapshot that swaps live files for `files` (all of them, or those in `only`),
/// plus `extra` updates.
async fn stage_rewrite(
    table: &Table,
    files: &[DataFile],
    properties: HashMap<String, String>,
    only: Option<&HashSet<String>>,
    operation: SnapshotOperation,
    extra: impl IntoIterator<Item = TableUpdate>,
) -> iceberg::Result<Table> {
    let (requirements, mut updates) =
        rewrite_updates(table, files.to_vec(), properties, only, operation).await?;
    updates.extend(extra);
    stage_updates(table, &requirements, updates).await
}

fn ident(key: &Key) -> Result<TableIdent> {
    TableIdent::from_strs(key.parts()).map_err(from_iceberg(format!("`{key}` is not a table name")))
}

impl Tables {
    pub fn new(catalog: Catalog, warehouse: Warehouse) -> Self {
        Self {
            catalog,
            warehouse,
            loaded: LoadedTables::new(LOADED_TABLES),
            max_metadata: crate::bounded::MAX_METADATA_SIZE,
        }
    }

    /// Reads no metadata file, manifest list or manifest larger than `bytes`
    /// (`[sql] max_metadata_size`, [`crate::bounded`]).
    pub fn with_max_metadata_size(mut self, bytes: u64) -> Self {
        self.max_metadata = bytes;
        self
    }

    /// Keeps at most `capacity` loaded tables (`[sql] table_cache`); 0 keeps none.
    pub fn with_table_cache(mut self, capacity: u64) -> Self {
        self.loaded = LoadedTables::new(capacity);
        self
    }

    /// The cache of loaded tables: its size, and its hits and misses so far.
    pub fn loaded_tables(&self) -> LoadedTablesStats {
        self.loaded.stats()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// The table `key` as of `at`.
    pub async fn load(&self, at: &Resolved, key: &Key) -> Result<Table> {
        let location = self.catalog.table_location(at, key).await?;
        self.load_from(key, &location).await
    }

    /// The table `key` as of `at`, or `None` where `at` holds no such table (or the acting
    /// principal may not read it).
    pub async fn load_if_present(&self, at: &Resolved, key: &Key) -> Result<Option<Table>> {
        match self.catalog.content(at, key).await? {
            Some(Content::Table { metadata_location }) => {
                self.load_from(key, &metadata_location).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The table whose metadata file is `metadata_location`; one loaded before is handed
    /// out again (src/loaded.rs).
    pub async fn load_from(&self, key: &Key, metadata_location: &str) -> Result<Table> {
        self.loaded
            .get_or_read(
                key,
                metadata_location,
                self.read_table(key, metadata_location),
            )
            .await
    }

    async fn read_table(&self, key: &Key, metadata_location: &str) -> Result<Table> {
        let ident = ident(key)?;
        crate::bounded::read_table(&self.warehouse, ident, metadata_location, self.max_metadata)
            .await
    }

    /// Syncs the files `after` adds to `before` to stable storage, skipping those in `synced`
    /// (see [`crate::durable`]). `new_table`: nothing points at the table's folder yet, so
    /// the folders above it are synced too. Called before every catalog commit.
    pub(crate) async fn make_durable(
        &self,
        before: Option<&Table>,
        after: &Table,
        new_table: bool,
        synced: &mut HashSet<String>,
    ) -> Result<()> {
        let files =
            crate::durable::new_files(before, after, &self.warehouse, self.max_metadata).await?;
        let Some(sync) = self.warehouse.file_sync() else {
            let table = after.identifier().to_string();
            let file_io = self.warehouse.file_io();
            return crate::durable::check_present(file_io, &table, files, synced).await;
        };
        let top = if new_table {
            self.warehouse.location()
        } else {
            after.metadata().location()
        };
        let top = crate::durable::local_path(top).unwrap_or_default();
        crate::durable::sync_files(sync, &top, files, synced).await
    }

    /// Fails unless every file `table`'s snapshots name (manifest lists, manifests, data and
    /// delete files) lies in the warehouse: for a table written elsewhere and registered, as
    /// every commit checks its own new files.
    pub async fn check_files_inside(&self, table: &Table) -> Result<()> {
        crate::durable::new_files(None, table, &self.warehouse, self.max_metadata)
            .await
            .map(drop)
    }

    /// A new, empty table: its first metadata file is written, but nothing points at it
    /// until a change to it is committed.
    /// With table properties beside the ones Basin sets.
    pub async fn stage_create(
        &self,
        key: &Key,
        schema: Schema,
        spec: UnboundPartitionSpec,
        mut properties: HashMap<String, String>,
    ) -> Result<Staged> {
        let context = format!("cannot create table `{key}`");
        let location = self.warehouse.new_table_location(key);
        let creation = TableCreation::builder()
            .name(key.name().to_string())
            .location(location.clone())
            .schema(schema)
            .partition_spec(spec)
            .properties({
                properties.insert(
                    crate::writer::COMPRESSION_CODEC.to_string(),
                    crate::writer::DEFAULT_COMPRESSION_CODEC.to_string(),
                );
                properties
            })
            .build();
        let metadata = TableMetadataBuilder::from_table_creation(creation)
            .and_then(|b| b.build())
            .map_err(from_iceberg(&context))?
            .metadata;
        let metadata_location = MetadataLocation::new_with_metadata(location, &metadata);
        metadata
            .write_to(self.warehouse.file_io(), &metadata_location)
            .await
            .map_err(from_iceberg(&context))?;
        let table = self.load_from(key, &metadata_location.to_string()).await?;
        Ok(Staged {
            table,
            created: true,
            schema_changed: false,
        })
    }

    /// `table` with extra nullable columns, staged (not committed).
    pub async fn stage_add_columns(
        &self,
        staged: Staged,
        columns: Vec<(String, Type)>,
    ) -> Result<Staged> {
        if columns.is_empty() {
            return Ok(staged);
        }
        let context = format!("cannot add columns to `{}`", staged.table.identifier());
        let catalog = StagingCatalog::new(staged.table.clone());
        let tx = Transaction::new(&staged.table);
        let update = columns
            .into_iter()
            .fold(tx.update_schema(), |update, (name, data_type)| {
                update.add_column(AddColumn::optional(name, data_type))
            });
        let tx = update.apply(tx).map_err(from_iceberg(&context))?;
        let table = tx.commit(&catalog).await.map_err(from_iceberg(&context))?;
        Ok(Staged {
            table,
            created: staged.created,
            schema_changed: true,
        })
    }

    /// An existing table as the base for a write.
    pub fn stage_existing(table: Table) -> Staged {
        Staged {
            table,
            created: false,
            schema_changed: false,
        }
    }

    pub(crate) async fn stage_change(
        &self,
        table: &Table,
        change: &TableChange,
        properties: &HashMap<String, String>,
    ) -> Result<Table> {
        let context = format!("cannot stage a change to `{}`", table.identifier());
        match change {
            TableChange::Append(files) => {
                let catalog = StagingCatalog::new(table.clone());
                let tx = Transaction::new(table);
                let tx = tx
                    .fast_append()
                    .with_check_duplicate(false)
                    .add_data_files(files.clone())
                    .set_snapshot_properties(properties.clone())
                    .apply(tx)
                    .map_err(from_iceberg(&context))?;
                tx.commit(&catalog).await.map_err(from_iceberg(&context))?;
                Ok(catalog.into_table().await)
            }
            TableChange::Replace(files) => stage_rewrite(
                table,
                files,
                properties.clone(),
                None,
                SnapshotOperation::Overwrite,
                [],
            )
            .await
            .map_err(from_iceberg(&context)),
            TableChange::Rewrite { removed, added } => stage_rewrite(
                table,
                added,
                properties.clone(),
                Some(removed),
                SnapshotOperation::Overwrite,
                [],
            )
            .await
            .map_err(from_iceberg(&context)),
            TableChange::Expire(snapshots) => {
                let (requirements, updates) = crate::expire::expire_updates(table, snapshots)?;
                stage_updates(table, &requirements, updates)
                    .await
                    .map_err(from_iceberg(&context))
            }
            TableChange::Compact {
                removed,
                added,
                sort_order,
            } => {
                // The same rows: what the current snapshot says about where they came from
                // (a source's position, `basin.source.*`) still holds, and must outlive the
                // expiry of the snapshot that said it first.
                let mut properties = properties.clone();
                if let Some(current) = table.metadata().current_snapshot() {
                    for (k, v) in &current.summary().additional_properties {
                        if k == SOURCE_PROPERTY || k.starts_with(&format!("{SOURCE_PROPERTY}.")) {
                            properties.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
                // -1: the sort order this change added.
                let order = sort_order.iter().flat_map(|order| {
                    [
                        TableUpdate::AddSortOrder {
                            sort_order: order.clone(),
                        },
                        TableUpdate::SetDefaultSortOrder { sort_order_id: -1 },
                    ]
                });
                stage_rewrite(
                    table,
                    added,
                    properties,
                    Some(removed),
                    SnapshotOperation::Replace,
                    order,
                )
                .await
                .map_err(from_iceberg(&context))
            }
        }
    }

    /// Commits `change` to `key` on `request.branch`, whose head was `request.expected_head`
    /// when `staged` was read. On a race with another writer of the same table, the change is
    /// staged again on the new head (data files are kept) and retried with backoff (see
    /// [`crate::retry`]) until it lands; only a true conflict (the table was created, dropped,
    /// or changed its schema or partitioning meanwhile) fails.
    pub async fn commit_change(
        &self,
        key: &Key,
        staged: Staged,
        change: TableChange,
        mut request: CommitRequest,
    ) -> Result<WriteOutcome> {
        let branch = request.branch.clone();
        let mut head = request.expected_head.clone();
        let mut base = staged.table.clone();
        self.catalog.sign(&mut request);
        let properties = snapshot_properties(&request);
        let mut backoff = Backoff::new();
        let mut synced = HashSet::new();
        loop {
            let new_table = self.stage_change(&base, &change, &properties).await?;
            self.make_durable(Some(&base), &new_table, staged.created, &mut synced)
                .await?;
            let location = new_table
                .metadata_location_result()
                .map_err(from_iceberg("staged table"))?
                .to_string();
            let mut operations = Vec::new();
            if let Some(ns) = key.namespace() {
                let at = Resolved {
                    spec: branch.clone(),
                    branch: Some(branch.clone()),
                    commit: head.clone(),
                };
                if self.catalog.content(&at, &ns).await?.is_none() {
                    operations.push(Operation::Put {
                        key: ns,
                        content: Content::namespace(),
                    });
                }
            }
            operations.push(Operation::Put {
                key: key.clone(),
                content: Content::table(location.clone()),
            });
            let mut attempt_request = request.clone();
            attempt_request.expected_head = head.clone();
            attempt_request.operations = operations;
            match self.catalog.commit(attempt_request).await {
                Ok(commit) => {
                    return Ok(WriteOutcome {
                        commit,
                        metadata_location: location,
                        snapshot_id: new_table.metadata().current_snapshot_id(),
                        attempts: backoff.attempt(),
                    });
                }
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    let spent = !backoff.next().await;
                    let current = self.catalog.resolve(&branch).await?;
                    base = self.rebase_target(&current, key, &staged, &base, e).await?;
                    if spent {
                        return Err(out_of_attempts(key.as_str(), &branch, backoff.attempt()));
                    }
                    head = current.commit;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The table a retried change applies to, or the conflict if it cannot be retried: the
    /// table must still be the one the change was staged on (same uuid, schema and partition
    /// spec, the test a merge of appends makes too: [`crate::merge::same_shape`]). Whatever
    /// the other writers did to its rows, re-staging an append (or a replacement of every
    /// row) on top of it is the same as having run after them.
    pub(crate) async fn rebase_target(
        &self,
        current: &Resolved,
        key: &Key,
        staged: &Staged,
        base: &Table,
        conflict: Error,
    ) -> Result<Table> {
        match (self.catalog.content(current, key).await?, staged.created) {
            (None, true) => Ok(base.clone()), // e.g. the namespace appeared meanwhile
            (Some(_), true) => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "table `{key}` was created on `{}` {CREATED_MEANWHILE}",
                    current.spec
                ),
            )
            .with_hint("run the command again: it will append to (or replace) that table")),
            (None, false) => Err(Error::not_found(format!(
                "table `{key}` was dropped from `{}` meanwhile",
                current.spec
            ))),
            (Some(Content::Table { metadata_location }), false) => {
                let fresh = self.load_from(key, &metadata_location).await?;
                // A staged schema change makes `base`'s schema differ from the head's.
                if !crate::merge::same_shape(base, &fresh) {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "`{key}` changed its schema or partitioning on `{}` while this change was written",
                            current.spec
                        ),
                    )
                    .with_source(conflict)
                    .with_hint("run the command again: it will write against the table's new schema"));
                }
                Ok(fresh)
            }
            (Some(_), false) => Err(Error::invalid(format!(
                "`{key}` is a namespace, not a table"
            ))),
        }
    }

    /// The columns of a table's current schema, in order.
    pub fn columns(table: &Table) -> Vec<ColumnSummary> {
        summary::columns(table)
    }

    /// Describes a table for `basin table show`.
    pub fn summarize(key: &Key, table: &Table) -> TableSummary {
        summary::summarize(key, table)
    }

    /// Whether both sides only appended to `key` since `base` (metadata locations of the
    /// three versions); if so, what merging them needs. Writes nothing.
    pub async fn mergeable_appends(
        &self,
        key: &Key,
        base: &str,
        source: &str,
        target: &str,
    ) -> Result<Option<MergeableAppends>> {
        let context = format!("cannot merge the appends to `{key}`");
        let base = self.load_from(key, base).await?;
        let target = self.load_from(key, target).await?;
        if crate::merge::appended_snapshots_since(&base, &target).is_none() {
            return Ok(None);
        }
        let source = self.load_from(key, source).await?;
        let files = crate::merge::appended_files_since(&base, &source)
            .await
            .map_err(from_iceberg(&context))?;
        Ok(files.map(|files| MergeableAppends {
            source_snapshot: source.metadata().current_snapshot_id(),
            target,
            files,
        }))
    }

    /// Stages the target with one more snapshot holding the source's appended files, its
    /// new metadata, manifest list and manifest made durable: a merge commits it next.
    pub async fn stage_merged_appends(&self, merge: MergeableAppends) -> Result<Table> {
        let mut properties = HashMap::from([(
            "basin.message".to_string(),
            format!("merge appends to {}", merge.target.identifier()),
        )]);
        if let Some(id) = merge.source_snapshot {
            properties.insert(crate::merge::MERGED_SNAPSHOT.to_string(), id.to_string());
        }
        let staged = self
            .stage_change(
                &merge.target,
                &TableChange::Append(merge.files),
                &properties,
            )
            .await?;
        self.make_durable(Some(&merge.target), &staged, false, &mut HashSet::new())
            .await?;
        Ok(staged)
    }
}

/// The error when a change lost every race in its budget: not a conflict in the data, but
/// too many writers at once.
pub(crate) fn out_of_attempts(key: &str, branch: &str, attempts: u32) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("`{key}` on `{branch}`: other writers kept committing first ({attempts} attempts)"),
    )
    .with_hint("run the command again, or write to this branch from fewer places at once")
}

/// Appends on both sides of a merge that can be combined: see [`Tables::mergeable_appends`].
pub struct MergeableAppends {
    target: Table,
    files: Vec<DataFile>,
    source_snapshot: Option<i64>,
}

/// How [`Tables::commit_change`]'s conflict ends when the change created its table and
/// another writer created one by that name first.
const CREATED_MEANWHILE: &str = "by another writer meanwhile";

/// Whether `e` says another writer created the table this change was creating: the change's
/// data was written for a table that lost the race, so a caller retries from the start, now
/// against the table that won (an import then appends to it, checked against its schema).
pub fn created_meanwhile(e: &Error) -> bool {
    e.kind() == ErrorKind::Conflict
        && e.message.starts_with("table `")
        && e.message.ends_with(CREATED_MEANWHILE)
}

/// What a table's new snapshot summary records of the catalog commit that writes it: the
/// commit's properties (a source's position, the door), its message and its author, so a
/// table read by another engine says who wrote each snapshot and how.
pub(crate) fn snapshot_properties(request: &CommitRequest) -> HashMap<String, String> {
    let mut properties: HashMap<String, String> = request
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    properties.insert("basin.message".to_string(), request.message.clone());
    properties.insert("basin.author".to_string(), request.author.clone());
    properties
}
