//! Arrow <-> Iceberg types, partition specs, and fitting a file's columns to a table's.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use basin_core::{Error, Result};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};

/// The Iceberg type for an Arrow type, for new columns.
pub fn iceberg_type(data_type: &DataType) -> Option<Type> {
    let p = match data_type {
        DataType::Boolean => PrimitiveType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            PrimitiveType::Int
        }
        DataType::Int64 | DataType::UInt32 => PrimitiveType::Long,
        DataType::Float16 | DataType::Float32 => PrimitiveType::Float,
        DataType::Float64 => PrimitiveType::Double,
        DataType::Decimal128(p, s) if *s >= 0 => PrimitiveType::Decimal {
            precision: u32::from(*p),
            scale: *s as u32,
        },
        DataType::Date32 | DataType::Date64 => PrimitiveType::Date,
        DataType::Timestamp(_, None) => PrimitiveType::Timestamp,
        DataType::Timestamp(_, Some(_)) => PrimitiveType::Timestamptz,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PrimitiveType::String,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => PrimitiveType::Binary,
        _ => return None,
    };
    Some(Type::Primitive(p))
}

/// SQL-ish name of an Arrow type, for messages.
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int64 => "BIGINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Utf8 => "STRING".into(),
        DataType::Boolean => "BOOLEAN".into(),
        other => other.to_string(),
    }
}

/// A new table's schema: every column nullable, in file order.
pub fn table_schema(columns: &[(String, DataType)], file: &str) -> Result<Schema> {
    let fields = columns
        .iter()
        .enumerate()
        .map(|(i, (name, data_type))| {
            let t = iceberg_type(data_type).ok_or_else(|| {
                Error::invalid(format!(
                    "{file}: column `{name}` has type {data_type}, which Basin cannot store yet"
                ))
                .with_hint("convert it to a string, number, date or timestamp first")
            })?;
            Ok(Arc::new(NestedField::optional(i as i32 + 1, name, t)))
        })
        .collect::<Result<Vec<_>>>()?;
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| Error::invalid(format!("bad schema: {e}")))
}

/// Reads one partition or sort term: `col`, `day(col)`, `month(col)`, `year(col)`,
/// `hour(col)`, `bucket(N, col)`, `truncate(W, col)`; the transform and the column.
pub fn partition_term(term: &str) -> Result<(Transform, &str)> {
    let bad = || {
        Error::invalid(format!("cannot read partition term `{term}`"))
            .with_hint("write COL, day(COL), month(COL), year(COL), hour(COL), bucket(N, COL) or truncate(W, COL)")
    };
    let term = term.trim();
    let Some((name, rest)) = term.split_once('(') else {
        return Ok((Transform::Identity, term));
    };
    let args: Vec<&str> = rest
        .strip_suffix(')')
        .ok_or_else(bad)?
        .split(',')
        .map(str::trim)
        .collect();
    let number = |s: &str| s.parse::<u32>().map_err(|_| bad());
    Ok(
        match (name.trim().to_ascii_lowercase().as_str(), args.as_slice()) {
            ("identity", [c]) => (Transform::Identity, *c),
            ("year", [c]) => (Transform::Year, *c),
            ("month", [c]) => (Transform::Month, *c),
            ("day", [c]) => (Transform::Day, *c),
            ("hour", [c]) => (Transform::Hour, *c),
            ("bucket", [n, c]) => (Transform::Bucket(number(n)?), *c),
            ("truncate", [w, c]) => (Transform::Truncate(number(w)?), *c),
            _ => return Err(bad()),
        },
    )
}

/// Parses `--partition-by` terms (see [`partition_term`]) into a spec over `schema`.
pub fn partition_spec(terms: &[String], schema: &Schema) -> Result<UnboundPartitionSpec> {
    let mut builder = UnboundPartitionSpec::builder();
    for term in terms {
        let (transform, column) = partition_term(term)?;
        let field = schema.field_by_name(column).ok_or_else(|| {
            Error::invalid(format!("cannot partition by `{column}`: no such column"))
                .with_hint(basin_table::unknown_column_hint(schema, column))
        })?;
        let name = match transform {
            Transform::Identity => column.to_string(),
            other => format!(
                "{column}_{}",
                other.to_string().split('[').next().unwrap_or("part")
            ),
        };
        builder = builder
            .add_partition_field(field.id, name, transform)
            .map_err(|e| {
                Error::invalid(format!("cannot partition by `{term}`: {}", e.message()))
            })?;
    }
    Ok(builder.build())
}

/// Fits `batch` (a file's columns, by name) to `target` (the table's columns, in order):
/// missing columns become nulls, and types are cast where the cast loses nothing.
pub fn conform(batch: &RecordBatch, target: &SchemaRef, file: &str) -> Result<RecordBatch> {
    let columns = target
        .fields()
        .iter()
        .map(|field| match batch.schema().index_of(field.name()) {
            Ok(i) => cast_column(batch.column(i), field, file),
            Err(_) if field.is_nullable() => {
                Ok(new_null_array(field.data_type(), batch.num_rows()))
            }
            Err(_) => Err(Error::invalid(format!(
                "{file}: required column `{}` is missing",
                field.name()
            ))
            .with_hint("add the column to the file; the table does not allow it to be empty")),
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    RecordBatch::try_new(target.clone(), columns)
        .map_err(|e| Error::internal(format!("{file}: rows do not fit the table schema: {e}")))
}

fn cast_column(column: &ArrayRef, field: &Field, file: &str) -> Result<ArrayRef> {
    if column.data_type() == field.data_type() {
        return Ok(column.clone());
    }
    if let (Some(ints), DataType::Float64) = (
        column.as_any().downcast_ref::<Int64Array>(),
        field.data_type(),
    ) {
        // A double holds every integer up to 2^53 exactly; past that it would round.
        if let Some(big) = ints.iter().flatten().find(|v| v.unsigned_abs() > 1 << 53) {
            return Err(Error::invalid(format!(
                "{file}: column `{}` holds {big}, which the table's DOUBLE would round",
                field.name()
            ))
            .with_hint("import into a new table (as BIGINT), or write the column as text"));
        }
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(column, field.data_type(), &options).map_err(|e| {
        Error::invalid(format!(
            "{file}: column `{}` holds {} values that do not fit the table's {}: {e}",
            field.name(),
            type_name(column.data_type()),
            type_name(field.data_type())
        ))
        .with_hint("fix the file, or import it into a new table")
    })
}

/// Whether a file column of type `from` may be stored in a table column of type `to`.
pub fn compatible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    match (from, to) {
        _ if from == to => true,
        // Never round a fraction; a value too large for the column fails the (unsafe) cast.
        (Decimal128(_, s1), Decimal128(_, s2)) => s2 >= s1,
        (Int8 | Int16 | Int32 | Int64, Decimal128(..)) => true,
        _ => matches!(
            (from, to),
            (Int8 | Int16 | Int32 | UInt8 | UInt16, Int32 | Int64)
                | (UInt32 | Int64, Int64)
                | (Float16 | Float32, Float32 | Float64)
                // Exact while the integers are (checked per value when cast).
                | (Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32, Float64)
                | (Utf8 | LargeUtf8 | Utf8View, Utf8)
                | (Binary | LargeBinary | BinaryView, LargeBinary)
                | (Date64, Date32)
                | (Timestamp(_, None), Timestamp(TimeUnit::Microsecond, None))
                | (
                    Timestamp(_, Some(_)),
                    Timestamp(TimeUnit::Microsecond, Some(_))
                )
        ),
    }
}

/// An Arrow schema for reading a file: the table's types for columns it knows, the file's
/// own for the rest.
pub fn reading_schema(file_columns: &[(String, DataType)], target: &ArrowSchema) -> SchemaRef {
    Arc::new(ArrowSchema::new(
        file_columns
            .iter()
            .map(|(name, t)| {
                let data_type = target
                    .field_with_name(name)
                    .map(|f| f.data_type().clone())
                    .unwrap_or_else(|_| t.clone());
                Field::new(name, data_type, true)
            })
            .collect::<Vec<_>>(),
    ))
}
