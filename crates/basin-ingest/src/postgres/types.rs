//! Postgres column types -> Iceberg types, and how each value is decoded from binary COPY.
//!
//! Exact where Iceberg can hold the value: numeric(p,s) is decimal(p,s) (p <= 38), timestamptz
//! is a timestamp with zone (UTC), uuid is uuid. Text-like types (varchar, bpchar with its
//! padding, name, enums, json, jsonb) are strings. Arrays, numeric without a precision,
//! interval, money, geometric and range types are not built yet: each is a clear error, or a
//! skipped column with `--skip-unsupported`.

use iceberg::spec::{PrimitiveType, Type};

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
}

/// Why a column cannot be loaded, for the error (or the warning with `--skip-unsupported`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unsupported {
    pub reason: String,
}

/// The decoding of `column`, or why it has none.
pub(crate) fn kind_of(column: &PgColumn) -> Result<Kind, Unsupported> {
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
        name if name.starts_with('_') => {
            return unsupported("is an array, which Basin does not load yet");
        }
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
    fn arrays_and_unknown_types_say_why() {
        let e = kind_of(&column("_int4", -1, "integer[]")).unwrap_err();
        assert!(e.reason.contains("integer[] is an array"), "{}", e.reason);
        assert!(kind_of(&column("interval", -1, "interval")).is_err());
    }
}
