//! The functions Postgres clients call that DataFusion lacks or answers otherwise:
//! per-connection constants (`current_database()`, `current_user`, `current_schema()`),
//! `version()`, `current_setting()`, Postgres' `format()`, and comments on objects (none).

use std::any::Any;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

/// A function of no arguments that answers `value` (per connection: the ref, the user).
pub(super) fn constant_text(name: &str, value: &str) -> ScalarUDF {
    let value = value.to_string();
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                value.clone(),
            ))))
        }),
    )
}

/// The functions every session of the door has: `version()` and Postgres' `format()`.
pub(super) fn install(context: &SessionContext) {
    let version = format!(
        "PostgreSQL 16.0 (Basin {}) on {}-linux, compiled by rustc",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    // Grafana and DBeaver read the server's version from it.
    context.register_udf(constant_text("version", &version));
    context.register_udf(ScalarUDF::new_from_impl(Format::new()));
}

/// `current_setting(name)` as a Postgres 16 server answers it (Grafana reads
/// `server_version_num`); `search_path` is the connection's.
pub(super) fn current_setting(search_path: &str) -> ScalarUDF {
    let values: Vec<(&'static str, String)> = vec![
        ("server_version", "16.0".into()),
        ("server_version_num", "160000".into()),
        ("search_path", search_path.to_string()),
        ("timezone", "UTC".into()),
        ("datestyle", "ISO, MDY".into()),
        ("client_encoding", "UTF8".into()),
        ("server_encoding", "UTF8".into()),
        ("standard_conforming_strings", "on".into()),
        ("integer_datetimes", "on".into()),
        ("max_index_keys", "32".into()),
        ("transaction_read_only", "on".into()),
        ("default_transaction_read_only", "on".into()),
    ];
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args| {
            let names = args[0].clone().into_array(1)?;
            let names = arrow::compute::cast(&names, &DataType::Utf8)?;
            let names = names
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8");
            let mut out = Vec::with_capacity(names.len());
            for name in names.iter() {
                out.push(match name {
                    None => None,
                    Some(name) => Some(
                        values
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.clone())
                            .ok_or_else(|| {
                                DataFusionError::Plan(format!(
                                    "unrecognized configuration parameter \"{name}\""
                                ))
                            })?,
                    ),
                });
            }
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
        }),
    )
}

/// Postgres' `format(template, args...)`: `%s` a value as text, `%I` an identifier (quoted when
/// it needs to be), `%L` a literal, `%%` a percent sign (Metabase builds `schema.table` names
/// with it). Positions (`%1$s`) and widths are not read.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: datafusion::logical_expr::Signature,
}

impl Format {
    fn new() -> Self {
        Self {
            signature: datafusion::logical_expr::Signature::variadic_any(
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Format {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        let rows = args.number_rows;
        let mut texts = Vec::with_capacity(args.args.len());
        for arg in &args.args {
            let array = arg.clone().into_array(rows)?;
            texts.push(arrow::compute::cast(&array, &DataType::Utf8)?);
        }
        let texts: Vec<&StringArray> = texts
            .iter()
            .map(|a| a.as_any().downcast_ref::<StringArray>().expect("Utf8"))
            .collect();
        let Some((template, values)) = texts.split_first() else {
            return Err(DataFusionError::Plan("format() needs a template".into()));
        };
        // Written straight into the answer's buffer: its size is what the query reserved for
        // it (`format` is one of basin-sql's amplifiers).
        let mut out = arrow::array::StringBuilder::with_capacity(rows, 0);
        for row in 0..rows {
            if template.is_null(row) {
                out.append_null();
                continue;
            }
            let mut next = values.iter();
            let mut text = String::new();
            let mut chars = template.value(row).chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    text.push(c);
                    continue;
                }
                let spec = chars.next();
                if spec == Some('%') {
                    text.push('%');
                    continue;
                }
                let value = next.next().ok_or_else(|| {
                    DataFusionError::Plan("too few arguments for format()".into())
                })?;
                let value = (!value.is_null(row)).then(|| value.value(row));
                match (spec, value) {
                    (Some('s'), v) => text.push_str(v.unwrap_or("")),
                    (Some('I'), Some(v)) => text.push_str(&quote_identifier(v)),
                    (Some('L'), Some(v)) => text.push_str(&format!("'{}'", v.replace('\'', "''"))),
                    (Some('L'), None) => text.push_str("NULL"),
                    (Some('I'), None) => {
                        return Err(DataFusionError::Plan(
                            "null values cannot be formatted as an SQL identifier".into(),
                        ));
                    }
                    (other, _) => {
                        return Err(DataFusionError::Plan(format!(
                            "unrecognized format() type specifier \"{}\"",
                            other.map(String::from).unwrap_or_default()
                        )));
                    }
                }
            }
            out.append_value(text);
        }
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            out.finish(),
        )))
    }
}

/// Replaces calls of `col_description(...)`, `obj_description(...)` and
/// `shobj_description(...)` with a null text: Basin keeps no comments on objects, and their
/// arguments are often what DataFusion cannot plan (Metabase passes
/// `CAST(CAST(format(...) AS REGCLASS) AS OID)`, a lookup per row).
pub(super) fn drop_comment_lookups(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{
        CastKind, DataType as SqlType, Expr as SqlExpr, Value, VisitMut, VisitorMut,
    };
    struct Comments;
    impl VisitorMut for Comments {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> std::ops::ControlFlow<()> {
            if let SqlExpr::Function(f) = expr
                && let Some(name) = f.name.0.last()
                && ["col_description", "obj_description", "shobj_description"]
                    .iter()
                    .any(|n| name.to_string().eq_ignore_ascii_case(n))
            {
                *expr = SqlExpr::Cast {
                    kind: CastKind::Cast,
                    expr: Box::new(SqlExpr::value(Value::Null)),
                    data_type: SqlType::Text,
                    array: false,
                    format: None,
                };
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Comments);
}

/// An identifier as Postgres' `quote_ident` writes it: bare when it is lower case letters,
/// digits and underscores (not starting with a digit), else in double quotes.
fn quote_identifier(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}
