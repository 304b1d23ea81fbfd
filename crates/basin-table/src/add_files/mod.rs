//! Parquet files added to a table where they lie, without copying (`basin table add-files`,
//! as Iceberg's `add_files` procedure and DuckLake's `ducklake_add_data_files` do).
//!
//! - A file written by another tool carries no Iceberg field ids, so the table gets a name
//!   mapping (`schema.name-mapping.default`): every Iceberg reader then matches such a file's
//!   columns by name.
//! - Each file's manifest entry carries what its footer knows (rows, sizes, value and null
//!   counts, lower and upper bounds: [`stats`]), so scans prune it as they prune Basin's own.
//! - A Hive-style folder (`year=2024/month=01/f.parquet`) gives its files partition values:
//!   the table is partitioned by identity on those keys, and their columns, which the files
//!   do not hold, are read from the manifests (the Iceberg spec's rule for identity
//!   partitions, which iceberg-rust and PyIceberg follow).
//!
//! Written by hand: iceberg-rust's conversion of a Parquet footer into a data file
//! (`ParquetWriter::parquet_files_to_data_files`) is crate-private and knows no partitions.

mod footer;
mod stats;

pub use footer::{FileToAdd, Footer, read_footers};

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::spec::{
    DataFile, MappedField, NameMapping, NestedFieldRef, PrimitiveType, Schema, Transform, Type,
    UnboundPartitionSpec,
};
use iceberg::table::Table;

use crate::error::{Error, Result, unknown_column_hint};

pub use iceberg::spec::DEFAULT_SCHEMA_NAME_MAPPING as NAME_MAPPING;

/// The schema and partition spec of a new table made from `footers`: the first file's
/// columns, then one column per Hive partition key (a whole number when every value is one,
/// else a string), partitioned by identity on those.
pub fn new_table_shape(footers: &[Footer]) -> Result<(Schema, UnboundPartitionSpec)> {
    let first = footers
        .first()
        .ok_or_else(|| Error::invalid("no Parquet file to add"))?;
    refuse_unsupported(first)?;
    let columns = arrow_schema_to_schema_auto_assign_ids(&first.schema).map_err(|e| {
        Error::invalid(format!(
            "{}: its columns have no Iceberg type: {}",
            first.file.location,
            e.message()
        ))
    })?;
    let keys = partition_keys(footers)?;
    let mut fields: Vec<NestedFieldRef> = columns.as_struct().fields().to_vec();
    let mut spec = UnboundPartitionSpec::builder();
    for (next_id, key) in (columns.highest_field_id() + 1..).zip(&keys) {
        if fields.iter().any(|f| &f.name == key) {
            return Err(Error::invalid(format!(
                "{}: column `{key}` is also a partition folder (`{key}=...`)",
                first.file.location
            ))
            .with_hint("name the folders after columns the files do not hold"));
        }
        let whole = footers
            .iter()
            .all(|f| value_of(&f.file, key).is_none_or(|v| v.parse::<i64>().is_ok()));
        let kind = if whole {
            PrimitiveType::Long
        } else {
            PrimitiveType::String
        };
        fields.push(Arc::new(iceberg::spec::NestedField::optional(
            next_id,
            key.as_str(),
            Type::Primitive(kind),
        )));
        spec = spec
            .add_partition_field(next_id, key.as_str(), Transform::Identity)
            .map_err(|e| Error::invalid(format!("partition `{key}`: {}", e.message())))?;
    }
    let schema = Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| Error::invalid(format!("table schema: {}", e.message())))?;
    Ok((schema, spec.build()))
}

/// The Hive partition keys every file has, in order: the same for all, or an error.
fn partition_keys(footers: &[Footer]) -> Result<Vec<String>> {
    let keys =
        |f: &Footer| -> Vec<String> { f.file.partition.iter().map(|(k, _)| k.clone()).collect() };
    let first = footers.first().map(keys).unwrap_or_default();
    for footer in footers {
        if keys(footer) != first {
            return Err(Error::invalid(format!(
                "{} lies under partition folders {:?}, {} under {:?}",
                footer.file.location,
                keys(footer),
                footers[0].file.location,
                first
            ))
            .with_hint("add files of one layout at a time"));
        }
    }
    Ok(first)
}

fn value_of<'a>(file: &'a FileToAdd, key: &str) -> Option<&'a str> {
    file.partition
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
}

/// Types an Iceberg v2 table cannot hold as the file holds them.
fn refuse_unsupported(footer: &Footer) -> Result<()> {
    for field in footer.schema.fields() {
        if let DataType::Timestamp(TimeUnit::Nanosecond, _) = field.data_type() {
            return Err(Error::invalid(format!(
                "{}: column `{}` holds nanosecond timestamps, which an Iceberg v2 table cannot",
                footer.file.location,
                field.name()
            ))
            .with_hint(
                "import the file instead (`basin import` converts it to microseconds), or \
                 rewrite it with microsecond timestamps (pyarrow: coerce_timestamps=\"us\")",
            ));
        }
    }
    Ok(())
}

/// Fails unless every file fits `table`: each of its columns is a column of the table with
/// the same type, the table's required columns are all there, and its partition folders are
/// the table's identity partitions, in order.
pub fn check_files(table: &Table, footers: &[Footer]) -> Result<()> {
    let schema = table.metadata().current_schema();
    let spec = table.metadata().default_partition_spec();
    let mut partition_columns = Vec::new();
    for field in spec.fields() {
        let column = schema
            .field_by_id(field.source_id)
            .map(|f| f.name.clone())
            .unwrap_or_default();
        if field.transform != Transform::Identity {
            return Err(Error::invalid(format!(
                "`{}` is partitioned by {}({column}), which no folder name gives",
                table.identifier(),
                field.transform
            ))
            .with_hint("add files to an unpartitioned table, or one partitioned by identity on Hive folders"));
        }
        partition_columns.push(column);
    }
    let key = table.identifier().to_string();
    for footer in footers {
        refuse_unsupported(footer)?;
        let location = &footer.file.location;
        let folders: Vec<&String> = footer.file.partition.iter().map(|(k, _)| k).collect();
        if folders != partition_columns.iter().collect::<Vec<_>>() {
            return Err(Error::invalid(format!(
                "{location} lies under partition folders {folders:?}, but `{key}` is partitioned by {partition_columns:?}"
            ))
            .with_hint("add files whose folders name the table's partition columns, in order"));
        }
        let columns = arrow_schema_to_schema_auto_assign_ids(&footer.schema)
            .map_err(|e| Error::invalid(format!("{location}: {}", e.message())))?;
        for column in columns.as_struct().fields() {
            let Some(field) = schema.field_by_name(&column.name) else {
                return Err(Error::invalid(format!(
                    "{location}: column `{}` is not a column of `{key}`",
                    column.name
                ))
                .with_hint(unknown_column_hint(schema, &column.name)));
            };
            if !same_type(&field.field_type, &column.field_type) {
                return Err(Error::invalid(format!(
                    "{location}: column `{}` is {}, but `{key}` has it as {}",
                    column.name, column.field_type, field.field_type
                ))
                .with_hint("rewrite the file with the table's types, or import it with `basin import`, which converts"));
            }
        }
        for field in schema.as_struct().fields() {
            let in_file = columns.field_by_name(&field.name).is_some();
            if field.required && !in_file && !partition_columns.contains(&field.name) {
                return Err(Error::invalid(format!(
                    "{location} has no column `{}`, which `{key}` requires",
                    field.name
                ))
                .with_hint("add files that hold every required column"));
            }
        }
    }
    Ok(())
}

/// Whether two types are the same but for their field ids.
fn same_type(a: &Type, b: &Type) -> bool {
    let same_field = |a: &NestedFieldRef, b: &NestedFieldRef| {
        a.name == b.name && same_type(&a.field_type, &b.field_type)
    };
    match (a, b) {
        (Type::Primitive(a), Type::Primitive(b)) => a == b,
        (Type::Struct(a), Type::Struct(b)) => {
            a.fields().len() == b.fields().len()
                && a.fields()
                    .iter()
                    .zip(b.fields())
                    .all(|(a, b)| same_field(a, b))
        }
        (Type::List(a), Type::List(b)) => {
            same_type(&a.element_field.field_type, &b.element_field.field_type)
        }
        (Type::Map(a), Type::Map(b)) => {
            same_type(&a.key_field.field_type, &b.key_field.field_type)
                && same_type(&a.value_field.field_type, &b.value_field.field_type)
        }
        _ => false,
    }
}

/// The table's name mapping (every column by its name), as the property's JSON.
pub fn name_mapping(schema: &Schema) -> String {
    fn mapped(fields: &[NestedFieldRef]) -> Vec<MappedField> {
        fields
            .iter()
            .map(|f| {
                let children: Vec<NestedFieldRef> = match f.field_type.as_ref() {
                    Type::Struct(s) => s.fields().to_vec(),
                    Type::List(l) => vec![l.element_field.clone()],
                    Type::Map(m) => vec![m.key_field.clone(), m.value_field.clone()],
                    Type::Primitive(_) => Vec::new(),
                };
                MappedField::new(Some(f.id), vec![f.name.clone()], mapped(&children))
            })
            .collect()
    }
    let mapping = NameMapping::new(mapped(schema.as_struct().fields()));
    serde_json::to_string(&mapping).expect("a name mapping serializes")
}

/// The data files for `footers`, with their statistics and partition values, for `table`
/// (checked with [`check_files`], or made by [`new_table_shape`]).
pub fn data_files(table: &Table, footers: &[Footer]) -> Result<Vec<DataFile>> {
    footers
        .iter()
        .map(|footer| stats::data_file(table, footer))
        .collect()
}

/// The Hive partition values in the folders between `root` and the file at `path` (both as
/// the user gave them): `key=value` segments, percent-decoded.
pub fn hive_partition(root: &str, path: &str) -> Vec<(String, Option<String>)> {
    let rest = path.strip_prefix(root).unwrap_or(path);
    let mut segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    segments.pop(); // the file's own name
    segments
        .into_iter()
        .filter_map(|segment| {
            let (key, value) = segment.split_once('=')?;
            let valid =
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            valid.then(|| {
                let value = percent_encoding::percent_decode_str(value)
                    .decode_utf8_lossy()
                    .into_owned();
                let value = (value != "__HIVE_DEFAULT_PARTITION__").then_some(value);
                (key.to_string(), value)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_folders_below_the_root_give_partition_values() {
        let found = hive_partition(
            "/lake/events",
            "/lake/events/year=2024/month=01/day=a%2Fb/f.parquet",
        );
        assert_eq!(
            found,
            vec![
                ("year".to_string(), Some("2024".to_string())),
                ("month".to_string(), Some("01".to_string())),
                ("day".to_string(), Some("a/b".to_string())),
            ]
        );
        // Folders above the root, and segments that are no key, give nothing.
        assert!(hive_partition("/x=1/lake", "/x=1/lake/f.parquet").is_empty());
        let found = hive_partition(
            "/lake",
            "/lake/k=__HIVE_DEFAULT_PARTITION__/plain/f.parquet",
        );
        assert_eq!(found, vec![("k".to_string(), None)]);
    }
}
