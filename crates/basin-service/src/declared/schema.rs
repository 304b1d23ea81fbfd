//! A declared table's words and Iceberg's nouns, both ways: column types (`long`,
//! `decimal(12, 2)`), partition fields (`day(ordered_at)`, `bucket(16, id)`, read as
//! `basin import --partition-by` reads them) and sort fields (`id desc nulls last`).
//! Iceberg's own string forms (`bucket[16]`, `ascending`) are not what people write in a
//! file, and no library reads these, so they are written here.

use std::sync::Arc;

use basin_core::{Error, Result};
use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, NullOrder, PrimitiveType, Schema,
    SortDirection, SortField, StructType, Transform, Type,
};

/// The Iceberg type a column declares. Besides Iceberg's names, a few SQL ones are read:
/// `bigint`, `integer`, `text`, `bool`.
pub fn parse_type(written: &str, context: &str) -> Result<Type> {
    let bad = |e: serde_json::Error| {
        Error::invalid(format!(
            "{context}: `{written}` is not an Iceberg type ({e})"
        ))
        .with_hint(
            "write one of boolean, int, long, float, double, decimal(P, S), date, time, \
             timestamp, timestamptz, string, uuid, binary, fixed[N], or a nested type as its \
             Iceberg JSON",
        )
    };
    let trimmed = written.trim();
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed).map_err(bad);
    }
    let lower = trimmed.to_ascii_lowercase();
    let name = match lower.as_str() {
        "bigint" => "long",
        "integer" => "int",
        "text" | "varchar" => "string",
        "bool" => "boolean",
        other => other,
    };
    serde_json::from_value::<PrimitiveType>(serde_json::Value::String(name.to_string()))
        .map(Type::Primitive)
        .map_err(bad)
}

/// How a type is written in a declaration: Iceberg's name, or a nested type's JSON.
/// Iceberg's JSON name for a primitive, which it also reads (`fixed[16]`, where its
/// `Display` writes `fixed(16)`).
pub fn type_text(t: &Type) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(nested) => nested.to_string(),
        Err(_) => t.to_string(),
    }
}

/// A type's shape with field ids left out, to compare a declared type with a table's.
pub fn shape(t: &Type) -> String {
    let field = |f: &NestedField| {
        let optional = if f.required { "" } else { "?" };
        format!("{}{optional}: {}", f.name, shape(&f.field_type))
    };
    match t {
        Type::Primitive(_) => type_text(t),
        Type::Struct(s) => {
            let fields: Vec<String> = s.fields().iter().map(|f| field(f)).collect();
            format!("struct<{}>", fields.join(", "))
        }
        Type::List(l) => format!("list<{}>", field(&l.element_field)),
        Type::Map(m) => format!("map<{}, {}>", field(&m.key_field), field(&m.value_field)),
    }
}

/// Whether Iceberg lets a column of type `from` become `to` in place (the spec's type
/// promotions: int to long, float to double, a decimal to a wider one of the same scale).
pub fn promotes(from: &Type, to: &Type) -> bool {
    use PrimitiveType::*;
    match (from, to) {
        (Type::Primitive(a), Type::Primitive(b)) => match (a, b) {
            (Int, Long) | (Float, Double) => true,
            (
                Decimal {
                    precision: p1,
                    scale: s1,
                },
                Decimal {
                    precision: p2,
                    scale: s2,
                },
            ) => s1 == s2 && p2 > p1,
            _ => false,
        },
        _ => false,
    }
}

/// `t` with fresh field ids for its nested fields, from `next` on (a new column's nested
/// fields must not reuse any id the table has used).
pub fn renumber(t: &Type, next: &mut i32) -> Type {
    let field = |f: &NestedFieldRef, next: &mut i32| -> NestedFieldRef {
        *next += 1;
        let id = *next;
        let inner = renumber(&f.field_type, next);
        Arc::new(NestedField::new(id, &f.name, inner, f.required))
    };
    match t {
        Type::Primitive(_) => t.clone(),
        Type::Struct(s) => {
            let fields = s.fields().iter().map(|f| field(f, next)).collect();
            Type::Struct(StructType::new(fields))
        }
        Type::List(l) => Type::List(ListType::new(field(&l.element_field, next))),
        Type::Map(m) => {
            let key = field(&m.key_field, next);
            let value = field(&m.value_field, next);
            Type::Map(MapType::new(key, value))
        }
    }
}

/// How a transform of `column` is written: `region`, `day(ordered_at)`, `bucket(16, id)`.
pub fn transform_text(transform: &Transform, column: &str) -> String {
    match transform {
        Transform::Identity => column.to_string(),
        Transform::Bucket(n) => format!("bucket({n}, {column})"),
        Transform::Truncate(w) => format!("truncate({w}, {column})"),
        other => format!("{other}({column})"),
    }
}

/// A sort field as written: `id`, `ordered_at desc`, `day(ts) asc nulls last`. Nulls come
/// first ascending and last descending unless said, as in Iceberg's engines.
pub fn parse_sort(written: &str, schema: &Schema, context: &str) -> Result<SortField> {
    let lower = written.trim().to_ascii_lowercase();
    let (rest, null_order) = if let Some(rest) = lower.strip_suffix(" nulls first") {
        (rest, Some(NullOrder::First))
    } else if let Some(rest) = lower.strip_suffix(" nulls last") {
        (rest, Some(NullOrder::Last))
    } else {
        (lower.as_str(), None)
    };
    let (rest, direction) = if let Some(rest) = rest.strip_suffix(" desc") {
        (rest, SortDirection::Descending)
    } else {
        (
            rest.strip_suffix(" asc").unwrap_or(rest),
            SortDirection::Ascending,
        )
    };
    let (transform, column) =
        basin_ingest::partition_term(rest).map_err(|e| super::spec::in_context(e, context))?;
    let source_id = column_id(schema, column, context)?;
    Ok(SortField {
        source_id,
        transform,
        direction,
        null_order: null_order.unwrap_or(match direction {
            SortDirection::Ascending => NullOrder::First,
            SortDirection::Descending => NullOrder::Last,
        }),
    })
}

/// How a sort field is written, in its shortest form.
pub fn sort_text(field: &SortField, schema: &Schema) -> String {
    let column = schema.name_by_field_id(field.source_id).unwrap_or("?");
    let mut text = transform_text(&field.transform, column);
    let default_nulls = match field.direction {
        SortDirection::Ascending => NullOrder::First,
        SortDirection::Descending => NullOrder::Last,
    };
    if field.direction == SortDirection::Descending {
        text.push_str(" desc");
    }
    if field.null_order != default_nulls {
        text.push_str(match field.null_order {
            NullOrder::First => " nulls first",
            NullOrder::Last => " nulls last",
        });
    }
    text
}

/// The id of `column` in `schema`, or an error that says which there are.
fn column_id(schema: &Schema, column: &str, context: &str) -> Result<i32> {
    schema.field_id_by_name(column).ok_or_else(|| {
        Error::invalid(format!("{context}: no column `{column}`"))
            .with_hint(basin_table::unknown_column_hint(schema, column))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_read_as_iceberg_names_and_sql_ones() {
        let t = parse_type("decimal(12,2)", "t").unwrap();
        assert_eq!(type_text(&t), "decimal(12, 2)");
        assert_eq!(type_text(&parse_type("bigint", "t").unwrap()), "long");
        let err = parse_type("money", "table `s.t`, column `x`").unwrap_err();
        assert!(err.message.contains("column `x`"), "{}", err.message);
    }

    #[test]
    fn promotions_are_icebergs() {
        let t = |s| parse_type(s, "t").unwrap();
        assert!(promotes(&t("int"), &t("long")));
        assert!(promotes(&t("decimal(9, 2)"), &t("decimal(12, 2)")));
        assert!(!promotes(&t("decimal(9, 2)"), &t("decimal(12, 3)")));
        assert!(!promotes(&t("long"), &t("int")));
        assert!(!promotes(&t("string"), &t("long")));
    }

    #[test]
    fn transforms_round_trip() {
        for written in [
            "region",
            "day(ordered_at)",
            "bucket(16, id)",
            "truncate(4, name)",
        ] {
            let (t, c) = basin_ingest::partition_term(written).unwrap();
            assert_eq!(transform_text(&t, c), written);
        }
        assert!(basin_ingest::partition_term("bucket(id)").is_err());
        assert!(basin_ingest::partition_term("day(x").is_err());
    }

    #[test]
    fn sort_fields_round_trip_in_their_shortest_form() {
        let schema = Schema::builder()
            .with_fields([Arc::new(NestedField::optional(
                1,
                "ts",
                Type::Primitive(PrimitiveType::Timestamptz),
            ))])
            .build()
            .unwrap();
        for written in ["ts", "ts desc", "day(ts) nulls last", "ts desc nulls first"] {
            let field = parse_sort(written, &schema, "t").unwrap();
            assert_eq!(sort_text(&field, &schema), written);
        }
        assert_eq!(
            sort_text(
                &parse_sort("ts ASC NULLS FIRST", &schema, "t").unwrap(),
                &schema
            ),
            "ts"
        );
    }
}
