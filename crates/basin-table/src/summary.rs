//! Tables described for people and scripts (`basin table show`): columns, partitioning, sort
//! order, snapshots and totals, read from a table's metadata alone.

use basin_catalog::Key;
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

/// A table described for people and scripts (`basin table show`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableSummary {
    pub table: String,
    pub metadata_location: String,
    pub location: String,
    pub format_version: String,
    pub columns: Vec<ColumnSummary>,
    pub partition_spec: Vec<String>,
    /// The default sort order, e.g. `id ASC NULLS FIRST` (empty: unsorted).
    #[serde(default)]
    pub sort_order: Vec<String>,
    #[serde(with = "crate::id_json::option")]
    pub current_snapshot_id: Option<i64>,
    pub snapshots: Vec<SnapshotSummary>,
    pub data_files: u64,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColumnSummary {
    pub id: i32,
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub required: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotSummary {
    #[serde(with = "crate::id_json")]
    pub snapshot_id: i64,
    #[serde(with = "crate::id_json::option")]
    pub parent_id: Option<i64>,
    pub timestamp_ms: i64,
    pub operation: String,
    pub added_records: Option<u64>,
    pub total_records: Option<u64>,
}

/// The columns of a table's current schema, in order.
pub(crate) fn columns(table: &Table) -> Vec<ColumnSummary> {
    table
        .metadata()
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| ColumnSummary {
            id: f.id,
            name: f.name.clone(),
            data_type: f.field_type.to_string(),
            required: f.required,
        })
        .collect()
}

/// Describes a table for `basin table show`.
pub(crate) fn summarize(key: &Key, table: &Table) -> TableSummary {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    let columns = columns(table);
    let partition_spec = metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| {
            let source = schema.name_by_field_id(f.source_id).unwrap_or("?");
            format!("{}({source})", f.transform)
        })
        .collect();
    let sort_order = metadata
        .default_sort_order()
        .fields
        .iter()
        .map(|f| {
            let source = schema.name_by_field_id(f.source_id).unwrap_or("?");
            let column = match f.transform {
                iceberg::spec::Transform::Identity => source.to_string(),
                other => format!("{other}({source})"),
            };
            let direction = match f.direction {
                iceberg::spec::SortDirection::Ascending => "ASC",
                iceberg::spec::SortDirection::Descending => "DESC",
            };
            let nulls = match f.null_order {
                iceberg::spec::NullOrder::First => "NULLS FIRST",
                iceberg::spec::NullOrder::Last => "NULLS LAST",
            };
            format!("{column} {direction} {nulls}")
        })
        .collect();
    let number = |s: &iceberg::spec::Snapshot, k: &str| {
        s.summary()
            .additional_properties
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
    };
    let mut snapshots: Vec<SnapshotSummary> = metadata
        .snapshots()
        .map(|s| SnapshotSummary {
            snapshot_id: s.snapshot_id(),
            parent_id: s.parent_snapshot_id(),
            timestamp_ms: s.timestamp_ms(),
            operation: s.summary().operation.as_str().to_string(),
            added_records: number(s, "added-records"),
            total_records: number(s, "total-records"),
        })
        .collect();
    snapshots.sort_by_key(|s| (s.timestamp_ms, s.snapshot_id));
    let current = metadata.current_snapshot();
    let total = |k: &str| current.and_then(|s| number(s, k)).unwrap_or(0);
    TableSummary {
        table: key.to_string(),
        metadata_location: table.metadata_location().unwrap_or_default().to_string(),
        location: metadata.location().to_string(),
        format_version: metadata.format_version().to_string(),
        columns,
        partition_spec,
        sort_order,
        current_snapshot_id: metadata.current_snapshot_id(),
        snapshots,
        data_files: total("total-data-files"),
        rows: total("total-records"),
        bytes: total("total-files-size"),
    }
}
