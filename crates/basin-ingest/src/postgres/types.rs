//! Postgres column types -> Iceberg types, and how each value is decoded from binary COPY.
//!
//! Exact where Iceberg can hold the value: numeric(p,s) is decimal(p,s) (p <= 38), timestamptz
//! is a timestamp with zone (UTC), uuid is uuid. Text-like types (varchar, bpchar with its
//! padding, name, enums, json, jsonb) are strings. One-dimensional arrays of those are Iceberg
//! lists. Numeric without a precision, interval, money, geometric and range types are not
//! built yet: each is a clear error, or a skipped column with `--skip-unsupported`.

use std::sync::Arc;

use iceberg::spec::{ListType, NestedField, PrimitiveType, Type};

/// How a column's binary COPY values are decoded (see `copy_decode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// UTF-8 text: text, varchar, bpchar, name, enums, json.
    Text,
    /// jsonb: a version byte, then the JSON text.
    Jsonb,
    Numeric {
        precision: u8,
        scale: i8,
    },
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Uuid,
    Bytea,
}

impl Kind {
    pub(crate) fn iceberg_type(self) -> Type {
        let p = match self {
            Kind::Bool => PrimitiveType::Boolean,
            Kind::Int16 | Kind::Int32 => PrimitiveType::Int,
            Kind::Int64 => PrimitiveType::Long,
            Kind::Float32 => PrimitiveType::Float,
            Kind::Float64 => PrimitiveType::Double,
            Kind::Text | Kind::Jsonb => PrimitiveType::String,
            Kind::Numeric { precision, scale } => PrimitiveType::Decimal {
                precision: u32::from(precision),
                scale: scale as u32,
            },
            Kind::Date => PrimitiveType::Date,
            Kind::Time => PrimitiveType::Time,
            Kind::Timestamp => PrimitiveType::Timestamp,
            Kind::Timestamptz => PrimitiveType::Timestamptz,
            Kind::Uuid => PrimitiveType::Uuid,
            Kind::Bytea => PrimitiveType::Binary,
        };
        Type::Primitive(p)
    }
}

/// A column's decoding: one value, or a one-dimensional array of them (an Iceberg list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decode {
    pub kind: Kind,
    pub list: bool,
}

impl Decode {
    /// The column's Iceberg type; a list's element gets `element_id` (a new table's schema
    /// needs unique ids; a column added to a table gets fresh ones anyway).
    pub(crate) fn iceberg_type(self, element_id: i32) -> Type {
        let value = self.kind.iceberg_type();
        if self.list {
            Type::List(ListType::new(Arc::new(NestedField::list_element(
                element_id, value, false,
            ))))
        } else {
            value
        }
    }
}

/// Whether two types are the same, field ids aside.
pub(crate) use crate::database::same_type;

impl crate::database::SourceColumn for (PgColumn, Decode) {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn display(&self) -> &str {
        &self.0.display
    }

    fn iceberg_type(&self, element_id: i32) -> Type {
        self.1.iceberg_type(element_id)
    }
}

/// A column as the Postgres catalog describes it.
#[derive(Clone, Debug)]
pub(crate) struct PgColumn {
    pub name: String,
    /// `pg_type.typname` of the column's type (of a domain's base type).
    pub type_name: String,
    /// `pg_type.typtype`: `b` base, `e` enum, ...
    pub type_type: String,
    pub type_mod: i32,
    /// `format_type(atttypid, atttypmod)`, for messages: `numeric(38,10)`, `integer[]`.
    pub display: String,
    /// An array's element type: its `typname` and `typtype` (the column's `type_mod` is the
    /// element's).
    pub element: Option<(String, String)>,
}

/// Why a column cannot be loaded, for the error (or the warning with `--skip-unsupported`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unsupported {
    pub reason: String,
}

/// The decoding of `column`, or why it has none.
pub(crate) fn decode_of(column: &PgColumn) -> Result<Decode, Unsupported> {
    let Some((type_name, type_type)) = &column.element else {
        return kind_of(column).map(|kind| Decode { kind, list: false });
    };
    let element = PgColumn {
        type_name: type_name.clone(),
        type_type: type_type.clone(),
        element: None,
        ..column.clone()
    };
    match kind_of(&element) {
        Ok(kind) => Ok(Decode { kind, list: true }),
        Err(why) => Err(Unsupported {
            reason: format!("an array whose elements are not loadable: {}", why.reason),
        }),
    }
}

fn kind_of(column: &PgColumn) -> Result<Kind, Unsupported> {
    if column.type_type == "e" {
        return Ok(Kind::Text);
    }
    let unsupported = |reason: &str| {
        Err(Unsupported {
            reason: format!("type {} {reason}", column.display),
        })
    };
    Ok(match column.type_name.as_str() {
        "bool" => Kind::Bool,
        "int2" => Kind::Int16,
        "int4" => Kind::Int32,
        "int8" => Kind::Int64,
        "float4" => Kind::Float32,
        "float8" => Kind::Float64,
        "text" | "varchar" | "bpchar" | "name" | "json" => Kind::Text,
        "jsonb" => Kind::Jsonb,
        "numeric" => return numeric(column.type_mod, &column.display),
        "date" => Kind::Date,
        "time" => Kind::Time,
        "timestamp" => Kind::Timestamp,
        "timestamptz" => Kind::Timestamptz,
        "uuid" => Kind::Uuid,
        "bytea" => Kind::Bytea,
        _ => return unsupported("has no Iceberg mapping in Basin yet"),
    })
}

/// numeric(p,s): decimal(p,s) when Iceberg can hold it (p <= 38, 0 <= s <= p).
fn numeric(type_mod: i32, display: &str) -> Result<Kind, Unsupported> {
    if type_mod < 4 {
        return Err(Unsupported {
            reason: format!(
                "type {display} has no precision, so its values have no fixed scale to store them at \
                 (declare it numeric(P,S) at the source, or cast it in a view)"
            ),
        });
    }
    // Postgres packs (precision << 16 | scale) + 4, the scale as 11 signed bits.
    let packed = type_mod - 4;
    let precision = (packed >> 16) & 0xffff;
    let scale = ((packed & 0x7ff) ^ 1024) - 1024;
    if !(1..=38).contains(&precision) || scale < 0 || scale > precision {
        return Err(Unsupported {
            reason: format!(
                "type {display} does not fit an Iceberg decimal (precision up to 38, scale 0 to the precision)"
            ),
        });
    }
    Ok(Kind::Numeric {
        precision: precision as u8,
        scale: scale as i8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(type_name: &str, type_mod: i32, display: &str) -> PgColumn {
        PgColumn {
            name: "c".into(),
            type_name: type_name.into(),
            type_type: "b".into(),
            type_mod,
            display: display.into(),
            element: None,
        }
    }

    #[test]
    fn numeric_keeps_its_precision_and_scale() {
        // numeric(38,10): (38 << 16 | 10) + 4
        let kind = kind_of(&column("numeric", (38 << 16 | 10) + 4, "numeric(38,10)"));
        assert_eq!(
            kind,
            Ok(Kind::Numeric {
                precision: 38,
                scale: 10
            })
        );
        assert!(kind_of(&column("numeric", -1, "numeric")).is_err());
        assert!(kind_of(&column("numeric", (40 << 16) + 4, "numeric(40,0)")).is_err());
        // A negative scale (Postgres 15 allows numeric(5,-2)) is not an Iceberg decimal.
        assert!(kind_of(&column("numeric", (5 << 16 | 0x7fe) + 4, "numeric(5,-2)")).is_err());
    }

    #[test]
    fn arrays_are_lists_of_their_elements_and_unknown_types_say_why() {
        let mut array = column("_numeric", (10 << 16 | 2) + 4, "numeric(10,2)[]");
        array.element = Some(("numeric".into(), "b".into()));
        let decode = decode_of(&array).unwrap();
        assert_eq!(
            decode,
            Decode {
                kind: Kind::Numeric {
                    precision: 10,
                    scale: 2
                },
                list: true
            }
        );
        let other = Decode {
            list: true,
            ..decode
        }
        .iceberg_type(99);
        assert!(same_type(&decode.iceberg_type(7), &other));
        assert!(!same_type(
            &decode.iceberg_type(7),
            &Kind::Int32.iceberg_type()
        ));
        array.element = Some(("interval".into(), "b".into()));
        let e = decode_of(&array).unwrap_err();
        assert!(
            e.reason.contains("elements are not loadable"),
            "{}",
            e.reason
        );
        assert!(decode_of(&column("interval", -1, "interval")).is_err());
    }
}
