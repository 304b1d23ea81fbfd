//! Read errors as users should see them: the CSV and JSON readers' messages turned into ones
//! that name the file, line, column and value, with a hint.

use std::fs::File;
use std::io::BufReader;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use basin_core::Error;

use crate::input_files::InputFile;
use crate::schema::type_name;

pub(crate) fn csv_error(file: &InputFile, names: &[String], e: ArrowError) -> Error {
    let text = e.to_string();
    // "incorrect number of fields for line L, expected E got G"
    if let Some(rest) = text.split("incorrect number of fields for line ").nth(1) {
        let line = rest.split(',').next().unwrap_or("?");
        let detail = rest.split_once(", ").map_or("", |(_, d)| d);
        // Unlike the parse errors below, this count is already the file's line.
        return wrong_field_count(file, line, detail);
    }
    // From the csv crate: "... Expected E records, found G records at line L" (L counts from 1).
    if text.contains("unequal lengths") {
        let detail = text.split("Expected ").nth(1).unwrap_or("");
        let expected = detail.split(' ').next().unwrap_or("?");
        let found = detail
            .split("found ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap_or("?");
        let line = detail
            .split("at line ")
            .nth(1)
            .map(str::trim)
            .unwrap_or("?");
        return wrong_field_count(file, line, &format!("expected {expected} got {found}"));
    }
    // "Error while parsing value 'V' as type 'T' for column C at line L. Row data: ..."
    if let Some(rest) = text.split("Error while parsing value '").nth(1) {
        let value = rest.split("' as type").next().unwrap_or("?");
        let column: Option<usize> = rest
            .split("for column ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok());
        let line = rest
            .split(" at line ")
            .nth(1)
            .and_then(|s| s.split('.').next())
            .unwrap_or("?");
        let name = column
            .and_then(|c| names.get(c))
            .map_or("?", String::as_str);
        let wanted = rest
            .split("as type '")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .unwrap_or("?");
        let wanted = wanted
            .parse::<DataType>()
            .map(|t| type_name(&t))
            .unwrap_or_else(|_| wanted.to_string());
        return Error::invalid(format!(
            "{}:{}: column `{name}`: `{value}` is not a valid {wanted}",
            file.display,
            csv_line(line)
        ))
        .with_hint(format!("fix the value, or store `{name}` as another type (it is {wanted} in the table or in the rows sampled to infer it)"));
    }
    Error::invalid(format!("{}: {text}", file.display))
        .with_hint("check the file's delimiter, quoting and header")
}

fn wrong_field_count(file: &InputFile, line: &str, detail: &str) -> Error {
    Error::invalid(format!(
        "{}:{line}: wrong number of fields ({detail})",
        file.display
    ))
    .with_hint("check that line's quoting, and the delimiter (--delimiter)")
}

/// arrow-csv's parse errors count records from 0 including the header; people count lines
/// from 1.
fn csv_line(arrow_line: &str) -> String {
    arrow_line
        .parse::<u64>()
        .map(|n| (n + 1).to_string())
        .unwrap_or_else(|_| arrow_line.to_string())
}

/// Parses the text columns `decimals` of `batch` as the decimals `schema` wants; an error
/// names the line (`first_line` is the line of the batch's first row).
pub(crate) fn json_error(
    file: &InputFile,
    schema: &SchemaRef,
    rows_before: u64,
    e: ArrowError,
) -> Error {
    use std::io::BufRead;
    let mut line_no = None;
    if let Ok(handle) = File::open(&file.path) {
        let mut data_rows = 0u64;
        for (i, line) in BufReader::new(handle).lines().enumerate() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            data_rows += 1;
            if data_rows <= rows_before {
                continue;
            }
            let decoded = arrow::json::ReaderBuilder::new(schema.clone())
                .with_strict_mode(true)
                .with_coerce_primitive(true)
                .build(line.as_bytes())
                .and_then(|mut r| r.next().transpose());
            if decoded.is_err() {
                line_no = Some(i + 1);
                break;
            }
        }
    }
    let at = line_no.map_or_else(|| format!("after line {rows_before}"), |n| n.to_string());
    let text = e.to_string();
    let hint = if text.contains("missing from schema") {
        "the key first appears after the rows sampled to infer the columns; import it into a table that has the column, or pass --allow-new-columns with a file whose first lines show it"
    } else {
        "every line must be one JSON object whose values fit the table's column types"
    };
    Error::invalid(format!("{}:{at}: {text}", file.display)).with_hint(hint)
}
