//! One declared table against the table on the branch: what creating it, changing it in place
//! or replacing it takes, in Iceberg's own change language ([`TableUpdates`]).
//!
//! In place is what Iceberg's schema evolution allows: adding an optional column, dropping
//! one, the type promotions of the spec, making a required column optional, reordering, and
//! a new partition spec, sort order or property. Anything else (a type Iceberg cannot promote,
//! a column becoming required, a new required column) is a replace: a new, empty table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use basin_catalog::Key;
use basin_core::{Error, Result};
use basin_table::TableUpdates;
use iceberg::spec::{
    NestedField, NestedFieldRef, Schema, SortOrder, TableMetadata, Type, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};

use super::schema::{
    parse_sort, parse_type, promotes, shape, sort_text, transform_text, type_text,
};
use super::spec::{ColumnDecl, TableDecl};

/// What one table needs.
pub enum TableWork {
    /// It is as declared.
    Same,
    /// Created new, or (a replace) created new in place of the table there.
    Create(TableUpdates),
    /// Changed in place, for these reasons.
    Update(TableUpdates, Vec<String>),
    /// Only a replace gets there, for these reasons.
    Replace(TableUpdates, Vec<String>),
}

/// Compares `declared` with `current` (the table on the branch, if there is one).
pub fn plan(
    tables: &basin_table::Tables,
    key: &Key,
    declared: &TableDecl,
    current: Option<&Table>,
) -> Result<TableWork> {
    let Some(current) = current else {
        return create(tables, key, declared).map(TableWork::Create);
    };
    let metadata = current.metadata();
    let context = format!("table `{key}`");
    let evolved = evolve_schema(metadata, declared, &context)?;
    if !evolved.refusals.is_empty() {
        return Ok(TableWork::Replace(
            create(tables, key, declared)?,
            evolved.refusals,
        ));
    }
    let mut reasons = evolved.reasons;
    let mut updates = Vec::new();
    let schema = match evolved.schema {
        Some(schema) => {
            updates.push(TableUpdate::AddSchema {
                schema: schema.clone(),
            });
            updates.push(TableUpdate::SetCurrentSchema { schema_id: -1 });
            schema
        }
        None => (**metadata.current_schema()).clone(),
    };
    // Compared as Basin writes them, so `DAY(ts)` and `day(ts)` are one field.
    let wanted = declared
        .partition
        .iter()
        .map(|t| basin_ingest::partition_term(t).map(|(tr, c)| transform_text(&tr, c)))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| super::spec::in_context(e, &context))?;
    if let Some(reason) = moved("partition", &partition_texts(metadata), &wanted) {
        reasons.push(reason);
        updates.push(TableUpdate::AddSpec {
            spec: partition_spec(&schema, &declared.partition, &context)?,
        });
        updates.push(TableUpdate::SetDefaultSpec { spec_id: -1 });
    }
    let order = sort_order(&schema, &declared.sort, &context)?;
    let wanted: Vec<String> = order.fields.iter().map(|f| sort_text(f, &schema)).collect();
    if let Some(reason) = moved("sort", &sort_texts(metadata), &wanted) {
        reasons.push(reason);
        if order.fields.is_empty() {
            updates.push(TableUpdate::SetDefaultSortOrder { sort_order_id: 0 });
        } else {
            updates.push(TableUpdate::AddSortOrder { sort_order: order });
            updates.push(TableUpdate::SetDefaultSortOrder { sort_order_id: -1 });
        }
    }
    let changed = changed_properties(metadata.properties(), &declared.properties);
    for (name, value) in &changed {
        reasons.push(match metadata.properties().get(name) {
            Some(old) => format!("property {name}: {old:?} -> {value:?}"),
            None => format!("+ property {name} = {value:?}"),
        });
    }
    if !changed.is_empty() {
        updates.push(TableUpdate::SetProperties { updates: changed });
    }
    if updates.is_empty() {
        return Ok(TableWork::Same);
    }
    let requirements = vec![
        TableRequirement::UuidMatch {
            uuid: metadata.uuid(),
        },
        TableRequirement::CurrentSchemaIdMatch {
            current_schema_id: metadata.current_schema_id(),
        },
    ];
    Ok(TableWork::Update(
        TableUpdates {
            key: key.clone(),
            requirements,
            updates,
        },
        reasons,
    ))
}

/// The table as a declaration: its columns in order, partition, sort, and its properties.
pub fn observed(metadata: &TableMetadata) -> TableDecl {
    let schema = metadata.current_schema();
    TableDecl {
        columns: schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| ColumnDecl {
                name: f.name.clone(),
                data_type: type_text(&f.field_type),
                required: f.required,
            })
            .collect(),
        partition: partition_texts(metadata),
        sort: sort_texts(metadata),
        properties: metadata
            .properties()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// A new table as declared, to commit with a not-exists requirement.
fn create(tables: &basin_table::Tables, key: &Key, declared: &TableDecl) -> Result<TableUpdates> {
    let context = format!("table `{key}`");
    if declared.columns.is_empty() {
        return Err(Error::invalid(format!("{context} declares no columns"))
            .with_hint("add `columns = [{ name = \"id\", type = \"long\" }, ...]`"));
    }
    let mut next = 0;
    let mut fields = Vec::with_capacity(declared.columns.len());
    for column in &declared.columns {
        let data_type = parse_type(&column.data_type, &column_context(&context, column))?;
        next += 1;
        let id = next;
        let data_type = super::schema::renumber(&data_type, &mut next);
        fields.push(field(id, column, data_type));
    }
    check_unique(&declared.columns, &context)?;
    let schema = Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| Error::invalid(format!("{context}: {}", e.message())))?;
    let spec = partition_spec(&schema, &declared.partition, &context)?;
    let order = (!declared.sort.is_empty())
        .then(|| sort_order(&schema, &declared.sort, &context))
        .transpose()?;
    let properties: HashMap<String, String> = declared.properties.clone().into_iter().collect();
    let (_, updates) =
        tables.new_table_metadata(key, schema, Some(spec), order, None, properties)?;
    Ok(TableUpdates::create(key.clone(), updates))
}

/// The schema the declaration asks of a table: its columns keep their ids, new ones get
/// ids the table never used.
struct Evolved {
    /// `None` when the columns are as declared.
    schema: Option<Schema>,
    reasons: Vec<String>,
    /// Why it cannot change in place.
    refusals: Vec<String>,
}

fn evolve_schema(metadata: &TableMetadata, declared: &TableDecl, context: &str) -> Result<Evolved> {
    check_unique(&declared.columns, context)?;
    let schema = metadata.current_schema();
    let top = schema.as_struct();
    let mut next = metadata.last_column_id();
    let (mut reasons, mut refusals, mut fields) = (Vec::new(), Vec::new(), Vec::new());
    for column in &declared.columns {
        let name = &column.name;
        let wanted = parse_type(&column.data_type, &column_context(context, column))?;
        let Some(existing) = top.field_by_name(name) else {
            if column.required {
                refusals.push(format!(
                    "adds required column `{name}`: the rows there have no value for it"
                ));
            }
            next += 1;
            let id = next;
            let data_type = super::schema::renumber(&wanted, &mut next);
            reasons.push(format!("+ column {name}: {}", shape(&wanted)));
            fields.push(field(id, column, data_type));
            continue;
        };
        let mut data_type = (*existing.field_type).clone();
        if shape(&data_type) != shape(&wanted) {
            if promotes(&data_type, &wanted) {
                reasons.push(format!(
                    "~ column {name}: {} -> {}",
                    shape(&data_type),
                    shape(&wanted)
                ));
                data_type = wanted;
            } else {
                refusals.push(format!(
                    "column `{name}`: {} -> {} is not a change Iceberg allows in place",
                    shape(&data_type),
                    shape(&wanted)
                ));
            }
        }
        match (existing.required, column.required) {
            (true, false) => reasons.push(format!("~ column {name}: required -> optional")),
            (false, true) => refusals.push(format!(
                "column `{name}` becomes required: rows with no value there would break it"
            )),
            _ => {}
        }
        fields.push(field(existing.id, column, data_type));
    }
    for dropped in top.fields() {
        if !declared.columns.iter().any(|c| c.name == dropped.name) {
            reasons.push(format!(
                "- column {} (earlier snapshots keep its values)",
                dropped.name
            ));
        }
    }
    let kept: Vec<&str> = top
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| declared.columns.iter().any(|c| c.name == *n))
        .collect();
    let declared_kept: Vec<&str> = declared
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| top.field_by_name(n).is_some())
        .collect();
    if kept != declared_kept {
        reasons.push(format!("columns reordered: {}", declared_kept.join(", ")));
    }
    let schema = if reasons.is_empty() {
        None
    } else {
        let identifiers: Vec<i32> = schema
            .identifier_field_ids()
            .filter(|id| fields.iter().any(|f: &NestedFieldRef| f.id == *id))
            .collect();
        Some(
            Schema::builder()
                .with_fields(fields)
                .with_identifier_field_ids(identifiers)
                .build()
                .map_err(|e| Error::invalid(format!("{context}: {}", e.message())))?,
        )
    };
    Ok(Evolved {
        schema,
        reasons,
        refusals,
    })
}

fn field(id: i32, column: &ColumnDecl, data_type: Type) -> NestedFieldRef {
    Arc::new(NestedField::new(
        id,
        &column.name,
        data_type,
        column.required,
    ))
}

fn column_context(table: &str, column: &ColumnDecl) -> String {
    format!("{table}, column `{}`", column.name)
}

fn check_unique(columns: &[ColumnDecl], context: &str) -> Result<()> {
    for (i, column) in columns.iter().enumerate() {
        if columns[..i].iter().any(|c| c.name == column.name) {
            return Err(Error::invalid(format!(
                "{context} declares column `{}` twice",
                column.name
            )));
        }
    }
    Ok(())
}

fn partition_texts(metadata: &TableMetadata) -> Vec<String> {
    let schema = metadata.current_schema();
    metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| {
            let column = schema.name_by_field_id(f.source_id).unwrap_or("?");
            transform_text(&f.transform, column)
        })
        .collect()
}

fn sort_texts(metadata: &TableMetadata) -> Vec<String> {
    let schema = metadata.current_schema();
    metadata
        .default_sort_order()
        .fields
        .iter()
        .map(|f| sort_text(f, schema))
        .collect()
}

/// The partition spec `fields` declare over `schema`, read as `basin import --partition-by`
/// reads its terms.
fn partition_spec(
    schema: &Schema,
    fields: &[String],
    context: &str,
) -> Result<UnboundPartitionSpec> {
    basin_ingest::partition_spec(fields, schema).map_err(|e| super::spec::in_context(e, context))
}

fn sort_order(schema: &Schema, fields: &[String], context: &str) -> Result<SortOrder> {
    let fields = fields
        .iter()
        .map(|written| parse_sort(written, schema, context))
        .collect::<Result<Vec<_>>>()?;
    Ok(SortOrder {
        order_id: 1,
        fields,
    })
}

/// `partition [a] -> [a, b] (new files only)` when the two lists differ.
fn moved(what: &str, now: &[String], wanted: &[String]) -> Option<String> {
    (now != wanted).then(|| {
        format!(
            "{what} [{}] -> [{}] (new files only)",
            now.join(", "),
            wanted.join(", ")
        )
    })
}

/// The declared properties the table does not have with the declared value.
fn changed_properties(
    current: &HashMap<String, String>,
    declared: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    declared
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
