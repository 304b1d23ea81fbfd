//! Printing: tables for people, JSON for scripts, errors with hints.

use std::io::Write;
use std::process::ExitCode;

use clap::ValueEnum;
use comfy_table::{Table, presets};
use serde::Serialize;

/// How list-like commands print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

#[derive(clap::Args, Clone, Copy, Debug)]
pub struct FormatArg {
    /// Output format: `table` for people, `json` for scripts
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// Prints rows as a table, or `value` as JSON.
pub fn print<T: Serialize>(
    format: ListFormat,
    value: &T,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        ListFormat::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(value)?)?,
        ListFormat::Table => {
            let mut table = Table::new();
            table
                .load_preset(presets::UTF8_FULL_CONDENSED)
                .set_header(header.to_vec())
                .add_rows(rows);
            writeln!(stdout, "{table}")?;
        }
    }
    Ok(())
}

/// Query results as a table in the style every other command prints (numbers right-aligned,
/// NULL for nulls).
pub fn batches_table(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[arrow::array::RecordBatch],
) -> anyhow::Result<String> {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_header(schema.fields().iter().map(|f| f.name().clone()));
    for row in basin_sql::text_rows(batches)? {
        table.add_row(row);
    }
    for (i, field) in schema.fields().iter().enumerate() {
        if field.data_type().is_numeric()
            && let Some(column) = table.column_mut(i)
        {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    Ok(table.to_string())
}

/// Prints a JSON value, or a line for people.
pub fn done<T: Serialize>(
    format: ListFormat,
    value: &T,
    line: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(value)?),
        ListFormat::Table => println!("{}", line()),
    }
    Ok(())
}

/// A status line for people, on stderr so stdout stays data.
pub fn status(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

pub fn time(ms: i64) -> String {
    basin_core::time::shown(ms)
}

/// Prints an error and its hint; user errors exit 1, Basin's own failures 2.
pub fn report_error(e: &anyhow::Error) -> ExitCode {
    let basin = e
        .chain()
        .find_map(|c| c.downcast_ref::<basin_core::Error>());
    match basin {
        Some(err) => {
            eprintln!("error: {err}");
            // Print each cause once: libraries often repeat their source in their message.
            let mut shown = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                shown = text;
                source = cause.source();
            }
            if let Some(hint) = &err.hint {
                eprintln!("hint: {hint}");
            }
            if err.is_user_error() {
                ExitCode::from(1)
            } else {
                eprintln!(
                    "note: this looks like a bug in Basin or a failing catalog store; please report it"
                );
                ExitCode::from(2)
            }
        }
        None => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
