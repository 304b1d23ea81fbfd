//! Iceberg's own change language (requirements and updates, as the REST catalog protocol
//! sends them) applied to tables on a branch, one or several tables in one catalog commit.
//!
//! Requirements are checked against the branch head. If the branch moves before the commit
//! lands, the store re-bases it when none of its tables changed; when one did, the
//! requirements are checked again on the new head and, if they still hold, the updates are
//! applied again: a retry that can succeed is made here, one that cannot is a conflict.

use std::collections::{HashMap, HashSet};

use basin_catalog::{CommitRequest, Content, Key, Operation, Resolved};
use basin_core::{Error, ErrorKind};
use iceberg::spec::{
    FormatVersion, Schema, SortOrder, TableMetadata, TableMetadataBuilder, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableRequirement, TableUpdate};

use crate::error::{Result, from_iceberg};
use crate::retry::Backoff;
use crate::staging::stage_updates;
use crate::tables::{Tables, out_of_attempts};

/// One table's part of a commit: what must hold, then what changes.
#[derive(Clone, Debug)]
pub struct TableUpdates {
    pub key: Key,
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
}

impl TableUpdates {
    /// Creating `key` with the metadata a [`TableMetadataBuilder`] produced from scratch.
    pub fn create(key: Key, updates: Vec<TableUpdate>) -> Self {
        Self {
            key,
            requirements: vec![TableRequirement::NotExist],
            updates,
        }
    }

    fn creates(&self) -> bool {
        self.requirements
            .iter()
            .any(|r| matches!(r, TableRequirement::NotExist))
    }
}

impl Tables {
    /// Applies `changes` to their tables on `request.branch` in one catalog commit, and
    /// returns each table as committed. Fails with `Conflict` when a requirement does not
    /// hold on the branch head, and `NotFound` for a table (or a new table's namespace)
    /// that is not there.
    pub async fn commit_updates(
        &self,
        changes: &[TableUpdates],
        request: CommitRequest,
    ) -> Result<Vec<Table>> {
        let branch = request.branch.clone();
        self.catalog().admit(&request).await?;
        let mut backoff = Backoff::new();
        let mut synced = HashSet::new();
        loop {
            let head = self.catalog().resolve(&branch).await?;
            let mut staged = Vec::with_capacity(changes.len());
            let mut operations = Vec::with_capacity(changes.len());
            for change in changes {
                let table = self
                    .stage_updates(&head, change, &request.operations, &mut synced)
                    .await?;
                let location = table
                    .metadata_location_result()
                    .map_err(from_iceberg("staged table"))?
                    .to_string();
                operations.push(Operation::Put {
                    key: change.key.clone(),
                    content: Content::table(location),
                });
                staged.push(table);
            }
            let mut attempt_request = request.clone();
            attempt_request.expected_head = head.commit.clone();
            // The request's own operations (namespaces made, tables dropped) go first; a
            // table both dropped and made again (a replace) is the new one's put alone.
            attempt_request.operations = request
                .operations
                .iter()
                .filter(|op| changes.iter().all(|c| &c.key != op.key()))
                .cloned()
                .chain(operations)
                .collect();
            match self.catalog().commit(attempt_request).await {
                Ok(_) => return Ok(staged),
                // A requirement that no longer holds fails in `stage_updates` above, as a
                // true conflict; this one only says the branch moved: check again.
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    tracing::debug!(
                        attempt = backoff.attempt(),
                        "a table changed meanwhile; checking again"
                    );
                    if !backoff.next().await {
                        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                        return Err(out_of_attempts(
                            &keys.join("`, `"),
                            &branch,
                            backoff.attempt(),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Checks one table's requirements at `head` (as the commit's own `operations` leave
    /// it), writes its next metadata file and syncs the files it adds (the client's data
    /// files and manifests too).
    async fn stage_updates(
        &self,
        head: &Resolved,
        change: &TableUpdates,
        operations: &[Operation],
        synced: &mut HashSet<String>,
    ) -> Result<Table> {
        let key = &change.key;
        let content = match operations.iter().rev().find(|op| op.key() == key) {
            Some(Operation::Delete { .. }) => None,
            Some(Operation::Put { content, .. }) => Some(content.clone()),
            None => self.catalog().content(head, key).await?,
        };
        let current = match content {
            Some(Content::Table { metadata_location }) => {
                Some(self.load_from(key, &metadata_location).await?)
            }
            Some(Content::Namespace { .. }) => {
                return Err(Error::invalid(format!(
                    "`{key}` is a namespace, not a table"
                )));
            }
            None => None,
        };
        for requirement in &change.requirements {
            requirement
                .check(current.as_ref().map(Table::metadata))
                .map_err(|e| {
                    let kind = if e.kind() == iceberg::ErrorKind::TableNotFound {
                        ErrorKind::NotFound
                    } else {
                        ErrorKind::Conflict
                    };
                    Error::new(kind, format!("`{key}` on `{}`: {}", head.spec, e.message()))
                        .with_hint("load the table again and retry the change on its current state")
                })?;
        }
        let context = format!("cannot apply the changes to `{key}`");
        let staged = match &current {
            Some(table) => stage_updates(table, &[], change.updates.clone())
                .await
                .map_err(from_iceberg(&context))?,
            None if change.creates() => {
                let made = |ns: &Key| {
                    operations.iter().any(|op| {
                        matches!(op, Operation::Put { key, content: Content::Namespace { .. } } if key == ns)
                    })
                };
                if let Some(ns) = key.namespace()
                    && !made(&ns)
                    && self.catalog().content(head, &ns).await?.is_none()
                {
                    return Err(Error::not_found(format!(
                        "namespace `{ns}` does not exist on `{}`",
                        head.spec
                    ))
                    .with_hint(format!("create it first: `basin namespace create {ns}`")));
                }
                self.stage_new(key, &change.updates).await?
            }
            None => {
                return Err(Error::not_found(format!(
                    "table `{key}` does not exist on `{}`",
                    head.spec
                )));
            }
        };
        self.make_durable(current.as_ref(), &staged, current.is_none(), synced)
            .await?;
        Ok(staged)
    }

    /// Writes the first metadata file of a table created by `updates` (a staged create:
    /// assign-uuid, add-schema, add-spec, set-location, ... and perhaps a first snapshot).
    async fn stage_new(&self, key: &Key, updates: &[TableUpdate]) -> Result<Table> {
        let context = format!("cannot create table `{key}`");
        let metadata = metadata_from_updates(updates, || self.warehouse().new_table_location(key))
            .map_err(from_iceberg(&context))?;
        let location = MetadataLocation::new_with_metadata(metadata.location(), &metadata);
        metadata
            .write_to(self.warehouse().file_io(), &location)
            .await
            .map_err(from_iceberg(&context))?;
        self.load_from(key, &location.to_string()).await
    }

    /// The metadata of a new table as `basin` would create it, for a REST create request:
    /// its changes, to commit with [`TableUpdates::create`], and the metadata itself.
    pub fn new_table_metadata(
        &self,
        key: &Key,
        schema: Schema,
        spec: Option<UnboundPartitionSpec>,
        sort_order: Option<SortOrder>,
        location: Option<String>,
        mut properties: HashMap<String, String>,
    ) -> Result<(TableMetadata, Vec<TableUpdate>)> {
        let context = format!("cannot create table `{key}`");
        let format_version = match properties.remove("format-version").as_deref() {
            None | Some("2") => FormatVersion::V2,
            Some("1") => FormatVersion::V1,
            Some("3") => FormatVersion::V3,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "{context}: format-version `{other}` is not 1, 2 or 3"
                )));
            }
        };
        properties
            .entry(crate::writer::COMPRESSION_CODEC.to_string())
            .or_insert_with(|| crate::writer::DEFAULT_COMPRESSION_CODEC.to_string());
        let built = TableMetadataBuilder::new(
            schema,
            spec.unwrap_or_default(),
            sort_order.unwrap_or(SortOrder::unsorted_order()),
            location.unwrap_or_else(|| self.warehouse().new_table_location(key)),
            format_version,
            properties,
        )
        .and_then(|b| b.build())
        .map_err(from_iceberg(&context))?;
        let mut changes = vec![
            TableUpdate::AssignUuid {
                uuid: built.metadata.uuid(),
            },
            TableUpdate::UpgradeFormatVersion { format_version },
        ];
        changes.extend(built.changes);
        Ok((built.metadata, changes))
    }
}

/// Builds a new table's metadata from the updates of a create transaction. iceberg-rust has
/// no "empty metadata" to apply them to (Java's `buildFromEmpty`), so the first schema,
/// location and format version seed a builder and every update is then applied in order;
/// re-adding the seed schema is a no-op because the builder reuses equal schemas.
fn metadata_from_updates(
    updates: &[TableUpdate],
    default_location: impl FnOnce() -> String,
) -> iceberg::Result<TableMetadata> {
    let schema = updates
        .iter()
        .find_map(|u| match u {
            TableUpdate::AddSchema { schema } => Some(schema.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                "a new table needs an add-schema update",
            )
        })?;
    let location = updates
        .iter()
        .find_map(|u| match u {
            TableUpdate::SetLocation { location } => Some(location.clone()),
            _ => None,
        })
        .unwrap_or_else(default_location);
    let format_version = updates
        .iter()
        .find_map(|u| match u {
            TableUpdate::UpgradeFormatVersion { format_version } => Some(*format_version),
            _ => None,
        })
        .unwrap_or(FormatVersion::V2);
    let mut builder = TableMetadataBuilder::new(
        schema,
        UnboundPartitionSpec::default(),
        SortOrder::unsorted_order(),
        location,
        format_version,
        HashMap::new(),
    )?;
    for update in updates {
        builder = update.clone().apply(builder)?;
    }
    Ok(builder.build()?.metadata)
}
