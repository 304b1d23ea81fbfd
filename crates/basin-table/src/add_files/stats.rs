//! A data file's manifest entry from its Parquet footer: rows, sizes, value and null counts,
//! lower and upper bounds (per top-level column; nested columns get none, which only makes
//! scans prune less), and the partition values its folders give.
//!
//! Bounds are kept only where every row group that holds a value has a statistic for it: a
//! bound taken over some row groups would let a scan skip rows of the others. A truncated
//! Parquet statistic (long strings) is still a bound, as Parquet defines it.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef};
use iceberg::arrow::arrow_primitive_to_literal;
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, Literal, PrimitiveLiteral,
    PrimitiveType, Schema, Struct, Type,
};
use iceberg::table::Table;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;

use super::footer::Footer;
use crate::error::{Error, Result};

/// Counts and bounds, by field id.
#[derive(Default)]
struct Metrics {
    column_sizes: HashMap<i32, u64>,
    value_counts: HashMap<i32, u64>,
    null_value_counts: HashMap<i32, u64>,
    lower_bounds: HashMap<i32, Datum>,
    upper_bounds: HashMap<i32, Datum>,
}

pub(super) fn data_file(table: &Table, footer: &Footer) -> Result<DataFile> {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    let spec = metadata.default_partition_spec();
    let rows = footer.metadata.file_metadata().num_rows().max(0) as u64;
    let mut metrics = column_metrics(schema, footer);
    // The partition's values, which are also its columns' only values in this file.
    let mut partition = Vec::new();
    for field in spec.fields() {
        let column = schema.field_by_id(field.source_id).ok_or_else(|| {
            Error::internal(format!("partition field {} has no column", field.name))
        })?;
        let value = footer
            .file
            .partition
            .iter()
            .find(|(k, _)| *k == column.name)
            .and_then(|(_, v)| v.as_deref());
        let datum = value
            .map(|v| partition_value(&column.field_type, v))
            .transpose()
            .map_err(|why| {
                Error::invalid(format!(
                    "{}: partition folder `{}={}`: {why}",
                    footer.file.location,
                    column.name,
                    value.unwrap_or_default()
                ))
                .with_hint("partition folders must hold values of their column's type")
            })?;
        metrics.value_counts.insert(column.id, rows);
        metrics
            .null_value_counts
            .insert(column.id, if datum.is_some() { 0 } else { rows });
        if let Some(datum) = &datum {
            metrics.lower_bounds.insert(column.id, datum.clone());
            metrics.upper_bounds.insert(column.id, datum.clone());
        }
        partition.push(datum.map(|d| Literal::Primitive(d.literal().clone())));
    }
    let offsets: Option<Vec<i64>> = footer
        .metadata
        .row_groups()
        .iter()
        .map(|rg| rg.file_offset())
        .collect();
    let mut builder = DataFileBuilder::default();
    builder
        .content(DataContentType::Data)
        .file_path(footer.file.location.clone())
        .file_format(DataFileFormat::Parquet)
        .partition(partition.into_iter().collect::<Struct>())
        .partition_spec_id(spec.spec_id())
        .record_count(rows)
        .file_size_in_bytes(footer.size)
        .column_sizes(metrics.column_sizes)
        .value_counts(metrics.value_counts)
        .null_value_counts(metrics.null_value_counts)
        .lower_bounds(metrics.lower_bounds)
        .upper_bounds(metrics.upper_bounds)
        .split_offsets(offsets.filter(|o| o.is_sorted()));
    builder
        .build()
        .map_err(|e| Error::internal(format!("the entry for {}: {e}", footer.file.location)))
}

/// The counts and bounds of the file's top-level columns that the table has.
fn column_metrics(schema: &Schema, footer: &Footer) -> Metrics {
    let mut metrics = Metrics::default();
    let groups = footer.metadata.row_groups();
    let parquet_schema = footer.metadata.file_metadata().schema_descr();
    for field in schema.as_struct().fields() {
        let Type::Primitive(kind) = field.field_type.as_ref() else {
            continue;
        };
        let Ok(converter) =
            StatisticsConverter::try_new(&field.name, &footer.schema, parquet_schema)
        else {
            continue; // not in this file
        };
        let Some(index) = converter.parquet_column_index() else {
            continue;
        };
        let chunks = groups.iter().map(|rg| rg.column(index));
        metrics.column_sizes.insert(
            field.id,
            chunks
                .clone()
                .map(|c| c.compressed_size().max(0) as u64)
                .sum(),
        );
        metrics
            .value_counts
            .insert(field.id, chunks.map(|c| c.num_values().max(0) as u64).sum());
        let Ok(nulls) = converter.row_group_null_counts(groups) else {
            continue;
        };
        if nulls.null_count() == 0 {
            metrics
                .null_value_counts
                .insert(field.id, nulls.values().iter().sum());
        }
        // Row groups holding only nulls have no bounds, and need none.
        let all_null: Vec<bool> = groups
            .iter()
            .enumerate()
            .map(|(i, rg)| nulls.is_valid(i) && nulls.value(i) == rg.num_rows().max(0) as u64)
            .collect();
        let bound = |values: Option<ArrayRef>, lowest: bool| -> Option<Datum> {
            let values = values?;
            let literals = arrow_primitive_to_literal(&values, &field.field_type).ok()?;
            let mut best: Option<Datum> = None;
            for (i, literal) in literals.into_iter().enumerate() {
                if all_null.get(i) == Some(&true) {
                    continue;
                }
                let datum = datum(kind, literal?)?; // a group without a statistic: no bound
                best = match best {
                    Some(b) if (lowest && b <= datum) || (!lowest && b >= datum) => Some(b),
                    _ => Some(datum),
                };
            }
            best
        };
        if let Some(lower) = bound(converter.row_group_mins(groups).ok(), true) {
            metrics.lower_bounds.insert(field.id, lower);
        }
        if let Some(upper) = bound(converter.row_group_maxes(groups).ok(), false) {
            metrics.upper_bounds.insert(field.id, upper);
        }
    }
    metrics
}

/// A literal of `kind` as a datum (iceberg's own constructor for this is crate-private).
fn datum(kind: &PrimitiveType, literal: Literal) -> Option<Datum> {
    let Literal::Primitive(value) = literal else {
        return None;
    };
    Some(match (kind, value) {
        (PrimitiveType::Boolean, PrimitiveLiteral::Boolean(v)) => Datum::bool(v),
        (PrimitiveType::Int, PrimitiveLiteral::Int(v)) => Datum::int(v),
        (PrimitiveType::Long, PrimitiveLiteral::Long(v)) => Datum::long(v),
        (PrimitiveType::Float, PrimitiveLiteral::Float(v)) if !v.is_nan() => Datum::float(v.0),
        (PrimitiveType::Double, PrimitiveLiteral::Double(v)) if !v.is_nan() => Datum::double(v.0),
        (PrimitiveType::Date, PrimitiveLiteral::Int(v)) => Datum::date(v),
        (PrimitiveType::Time, PrimitiveLiteral::Long(v)) => Datum::time_micros(v).ok()?,
        (PrimitiveType::Timestamp, PrimitiveLiteral::Long(v)) => Datum::timestamp_micros(v),
        (PrimitiveType::Timestamptz, PrimitiveLiteral::Long(v)) => Datum::timestamptz_micros(v),
        (PrimitiveType::String, PrimitiveLiteral::String(v)) => Datum::string(v),
        (PrimitiveType::Binary, PrimitiveLiteral::Binary(v)) => Datum::binary(v),
        (PrimitiveType::Decimal { .. }, PrimitiveLiteral::Int128(v)) => {
            Datum::try_from_bytes(&v.to_be_bytes(), kind.clone()).ok()?
        }
        _ => return None,
    })
}

/// A partition folder's value as its column's type.
fn partition_value(kind: &Type, value: &str) -> std::result::Result<Datum, String> {
    let Type::Primitive(kind) = kind else {
        return Err(format!("a {kind} column cannot be a partition"));
    };
    let bad = |e: String| format!("`{value}` is not a {kind}: {e}");
    match kind {
        PrimitiveType::String => Ok(Datum::string(value)),
        PrimitiveType::Long => value
            .parse::<i64>()
            .map(Datum::long)
            .map_err(|e| bad(e.to_string())),
        PrimitiveType::Int => value
            .parse::<i32>()
            .map(Datum::int)
            .map_err(|e| bad(e.to_string())),
        PrimitiveType::Boolean => {
            Datum::bool_from_str(value).map_err(|e| bad(e.message().to_string()))
        }
        PrimitiveType::Date => {
            Datum::date_from_str(value).map_err(|e| bad(e.message().to_string()))
        }
        other => Err(format!(
            "partition folders of type {other} are not supported"
        )),
    }
}
