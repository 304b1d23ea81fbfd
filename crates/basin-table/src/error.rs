pub use basin_core::{Error, ErrorKind, Result};

/// Converts an iceberg error, keeping it as the cause.
pub fn from_iceberg(context: impl std::fmt::Display) -> impl FnOnce(iceberg::Error) -> Error {
    move |e| {
        let kind = match e.kind() {
            iceberg::ErrorKind::TableNotFound | iceberg::ErrorKind::NamespaceNotFound => {
                ErrorKind::NotFound
            }
            iceberg::ErrorKind::TableAlreadyExists | iceberg::ErrorKind::NamespaceAlreadyExists => {
                ErrorKind::AlreadyExists
            }
            iceberg::ErrorKind::CatalogCommitConflicts => ErrorKind::Conflict,
            iceberg::ErrorKind::DataInvalid | iceberg::ErrorKind::PreconditionFailed => {
                ErrorKind::InvalidInput
            }
            iceberg::ErrorKind::FeatureUnsupported => ErrorKind::InvalidInput,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{context}: {}", e.message())).with_source(e)
    }
}

/// The hint for a column a table does not have: the nearest name, else all of them.
pub fn unknown_column_hint(schema: &iceberg::spec::Schema, column: &str) -> String {
    let names: Vec<&str> = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    match basin_core::suggest(column, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("its columns: {}", names.join(", ")),
    }
}
