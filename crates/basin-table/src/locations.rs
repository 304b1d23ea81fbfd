//! Where Basin's writers put a table's data files: `{table location}/data/{partition
//! path}/{file}`, always inside the table's own location.
//!
//! Iceberg's `DefaultLocationGenerator` does two things Basin must not: it writes partition
//! values into the path as they are (a string value `a/../../../tmp/x` becomes folders, and
//! the file system resolves the `..`), and it follows the `write.data.path` and
//! `write.folder-storage.path` table properties, which an Iceberg REST client could point
//! anywhere. So this generator percent-encodes each partition field's name and value, as
//! Iceberg's Java writer URL-encodes them, and takes no property.

use iceberg::spec::{PartitionKey, TableMetadata};
use iceberg::writer::file_writer::location_generator::LocationGenerator;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a partition path segment keeps as it is: letters, digits and `-_.` (so dates and
/// numbers read as before); everything else, `/`, `=` and `%` among it, is escaped.
const KEPT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

#[derive(Clone, Debug)]
pub(crate) struct TableLocations {
    data: String,
}

impl TableLocations {
    pub(crate) fn new(metadata: &TableMetadata) -> Self {
        Self {
            data: format!("{}/data", metadata.location().trim_end_matches('/')),
        }
    }
}

impl LocationGenerator for TableLocations {
    fn generate_location(&self, key: Option<&PartitionKey>, file_name: &str) -> String {
        match key.filter(|k| !k.spec().is_unpartitioned()) {
            None => format!("{}/{file_name}", self.data),
            Some(key) => format!("{}/{}/{file_name}", self.data, partition_path(key)),
        }
    }
}

/// `name=value/name=value`, each name and value escaped.
fn partition_path(key: &PartitionKey) -> String {
    let escape = |s: &str| utf8_percent_encode(s, KEPT).to_string();
    let Ok(partition_type) = key.spec().partition_type(key.schema()) else {
        // Not expected (the key was made from this spec and schema): one escaped folder.
        return escape(&key.to_path());
    };
    let types = partition_type.fields();
    key.spec()
        .fields()
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (field, typed))| {
            let value = field
                .transform
                .to_human_string(&typed.field_type, key.data()[i].as_ref());
            format!("{}={}", escape(&field.name), escape(&value))
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use iceberg::spec::{
        Literal, NestedField, PartitionSpec, PrimitiveType, Schema, Struct, Transform, Type,
    };

    use super::*;

    fn key(values: [&str; 2]) -> PartitionKey {
        let schema = Arc::new(
            Schema::builder()
                .with_fields(vec![
                    NestedField::required(1, "region", Type::Primitive(PrimitiveType::String))
                        .into(),
                    NestedField::required(2, "a/../b", Type::Primitive(PrimitiveType::String))
                        .into(),
                ])
                .build()
                .unwrap(),
        );
        let spec = PartitionSpec::builder(schema.clone())
            .add_partition_field("region", "region", Transform::Identity)
            .unwrap()
            .add_partition_field("a/../b", "a/../b", Transform::Identity)
            .unwrap()
            .build()
            .unwrap();
        let data = Struct::from_iter(values.map(|v| Some(Literal::string(v))));
        PartitionKey::new(spec, schema, data)
    }

    #[test]
    fn partition_names_and_values_stay_one_folder_each_inside_the_table() {
        let locations = TableLocations {
            data: "/w/t/data".into(),
        };
        assert_eq!(
            locations.generate_location(Some(&key(["EU", "2024-01-02"])), "f.parquet"),
            "/w/t/data/region=EU/a%2F..%2Fb=2024-01-02/f.parquet"
        );
        let hostile = locations.generate_location(
            Some(&key(["a/../../../../tmp/owned", "x=y %"])),
            "f.parquet",
        );
        assert_eq!(
            hostile,
            "/w/t/data/region=a%2F..%2F..%2F..%2F..%2Ftmp%2Fowned/a%2F..%2Fb=x%3Dy%20%25/f.parquet"
        );
        assert_eq!(
            locations.generate_location(None, "f.parquet"),
            "/w/t/data/f.parquet"
        );
    }
}
