//! What loading any database shares: the report of a load, the Basin table a source
//! table's rows go to ([`stage`]), and how a source's column says what it becomes.

pub(crate) mod cdc;
pub mod follow;
pub mod report;

use std::sync::Arc;

use basin_catalog::{Content, Key};
use basin_core::{Error, Result};
use basin_table::Tables;
use iceberg::spec::{NestedField, Schema, Type};

/// A source table's column, as a load reads it.
pub(crate) trait SourceColumn {
    fn name(&self) -> &str;
    /// Its type at the source, for messages: `numeric(38,10)`, `bigint unsigned`.
    fn display(&self) -> &str;
    /// Its type in Basin; `element_id` is the field id a list's element takes.
    fn iceberg_type(&self, element_id: i32) -> Type;
}

pub(crate) fn per_second(rows: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        rows as f64 / seconds
    } else {
        0.0
    }
}

/// Whether a column stored as `a` can take values of `b` unchanged.
pub(crate) fn same_type(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::List(a), Type::List(b)) => {
            a.element_field.required == b.element_field.required
                && same_type(&a.element_field.field_type, &b.element_field.field_type)
        }
        _ => a == b,
    }
}

/// The Basin table a source table's rows go to: created, or the existing one (with columns
/// added at the source added to it). `columns` is put in the table's column order, the order
/// the COPY reads them in. A column dropped or retyped at the source stops the load.
pub(crate) async fn stage<C: SourceColumn>(
    tables: &Tables,
    at: &basin_catalog::Resolved,
    key: &Key,
    table: &str,
    columns: &mut Vec<C>,
) -> Result<basin_table::Staged> {
    let existing = match tables.catalog().content(at, key).await? {
        Some(Content::Table { metadata_location }) => {
            Some(tables.load_from(key, &metadata_location).await?)
        }
        Some(Content::Namespace { .. }) => {
            return Err(Error::invalid(format!(
                "`{key}` is a namespace, not a table"
            )));
        }
        None => None,
    };
    let Some(existing) = existing else {
        let fields = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Columns are 1..=n; a list's element takes an id after them.
                let element_id = columns.len() as i32 + i as i32 + 1;
                Arc::new(NestedField::optional(
                    i as i32 + 1,
                    c.name(),
                    c.iceberg_type(element_id),
                ))
            })
            .collect::<Vec<_>>();
        let schema =
            Schema::builder()
                .with_fields(fields)
                .build()
                .map_err(basin_table::from_iceberg(format!(
                    "cannot make a schema for `{key}`"
                )))?;
        return tables
            .stage_create(
                key,
                schema,
                iceberg::spec::UnboundPartitionSpec::builder().build(),
                Default::default(),
            )
            .await;
    };
    let schema = existing.metadata().current_schema().clone();
    let mut ordered = Vec::with_capacity(columns.len());
    for field in schema.as_struct().fields() {
        let Some(i) = columns.iter().position(|c| c.name() == field.name) else {
            return Err(Error::invalid(format!(
                "`{key}` has a column `{}` that {} no longer has (dropped, renamed, or left out as unsupported)",
                field.name, table
            ))
            .with_hint(format!(
                "Basin does not drop columns on its own: drop the table (`basin table rm {key}`) and ingest again to start over"
            )));
        };
        let column = columns.remove(i);
        if !same_type(&field.field_type, &column.iceberg_type(0)) {
            return Err(Error::invalid(format!(
                "{table}.{} is {} now, but `{key}` stores it as {}",
                column.name(),
                column.display(),
                field.field_type
            ))
            .with_hint(format!(
                "Basin does not retype columns on its own: drop the table (`basin table rm {key}`) and ingest again to start over"
            )));
        }
        ordered.push(column);
    }
    // What is left was added at the source: added to the table, at its end.
    let added: Vec<(String, iceberg::spec::Type)> = columns
        .iter()
        .map(|c| (c.name().to_string(), c.iceberg_type(0)))
        .collect();
    ordered.append(columns);
    *columns = ordered;
    tables
        .stage_add_columns(Tables::stage_existing(existing), added)
        .await
}
