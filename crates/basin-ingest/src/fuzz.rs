//! Fuzz targets for reading CSV and JSON files (see `basin-fuzz`): inference (`probe`), then
//! a read with the types the table would get, the way `import` does both.
//!
//! For any bytes: no panic and no hang; an error is the user's (never `Internal`) and names
//! the file. When the probe accepts a file (every row sampled), the read fails only for a
//! quote left open at the end of the file, and it reads exactly the records that a reference
//! parser counts (the `csv` crate, `serde_json`'s value stream).

use std::path::Path;
use std::sync::Arc;

use basin_core::{Error, ErrorKind};
use basin_fuzz::Verdict;

use crate::input_files::{self, InputFile};
use crate::read::{self, CsvOptions};
use crate::schema;

/// Large enough that every row of a fuzz input is sampled.
const SAMPLE_ROWS: usize = 1 << 20;

const CSV_WORDS: &[&str] = &[
    "\"",
    "\"\"",
    ",",
    "\r\n",
    "\n",
    "\r",
    "\t",
    "|",
    "\u{feff}",
    "\"x,y\"",
    "\"a\nb\"",
    "1",
    "-0",
    "+5",
    " 7",
    "1.50",
    "1e400",
    "9223372036854775808",
    "123456789012345678901234567890",
    "0.000000000000000000001",
    "NaN",
    "inf",
    "true",
    "FALSE",
    "2024-01-31",
    "2024-02-30",
    "2024-01-31 10:00",
    "2024-01-31T10:00:00.123456789Z",
    "2024-01-31 10:00:00+02:00",
    "-271821-04-20",
    "Müller",
    "東京",
    "\u{0}",
    "null",
    "",
    ",,",
];

const JSON_WORDS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "\n",
    "\"a\":",
    "\"b\":",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "1e400",
    "-1e-400",
    "9223372036854775808",
    "18446744073709551616",
    "\"2024-01-31\"",
    "\"2024-01-31 10:00\"",
    "\"2024-01-31T10:00:00Z\"",
    "\"2024-02-30\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"x\"",
    "[]",
    "{}",
    "[1,2]",
    "{\"c\":1}",
    "\u{feff}",
];

#[test]
fn csv_corpus_replays_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    basin_fuzz::replay("csv", |bytes| check_csv(dir.path(), bytes));
}

#[test]
#[ignore = "fuzzing: run with scripts/fuzz.sh csv"]
fn csv_mutations() {
    let dir = tempfile::tempdir().unwrap();
    basin_fuzz::run("csv", CSV_WORDS, |bytes| check_csv(dir.path(), bytes));
}

#[test]
fn json_corpus_replays_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    basin_fuzz::replay("json", |bytes| check_json(dir.path(), bytes));
}

#[test]
#[ignore = "fuzzing: run with scripts/fuzz.sh json"]
fn json_mutations() {
    let dir = tempfile::tempdir().unwrap();
    basin_fuzz::run("json", JSON_WORDS, |bytes| check_json(dir.path(), bytes));
}

fn check_csv(dir: &Path, bytes: &[u8]) -> Verdict {
    let file = input_file(dir, "input.csv", bytes)?;
    let Some(rows) = probe_and_read(&file)? else {
        return Ok(());
    };
    // The reference: the csv crate (arrow-csv's own tokenizer, csv-core, underneath a reader
    // of its own), with the byte-order mark Basin drops.
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reference = csv::ReaderBuilder::new().from_reader(text);
    let mut expected = 0u64;
    for record in reference.records() {
        record.map_err(|e| format!("Basin read {rows} rows where the csv crate fails: {e}"))?;
        expected += 1;
    }
    if rows != expected {
        return Err(format!("read {rows} rows, the csv crate reads {expected}"));
    }
    Ok(())
}

fn check_json(dir: &Path, bytes: &[u8]) -> Verdict {
    let file = input_file(dir, "input.jsonl", bytes)?;
    let Some(rows) = probe_and_read(&file)? else {
        return Ok(());
    };
    let values = serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>();
    let mut expected = 0u64;
    for value in values {
        value.map_err(|e| format!("Basin read {rows} rows where serde_json fails: {e}"))?;
        expected += 1;
    }
    if rows != expected {
        return Err(format!(
            "read {rows} rows, serde_json reads {expected} values"
        ));
    }
    Ok(())
}

fn input_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<InputFile, String> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut files = futures::executor::block_on(input_files::expand(
        &[path.display().to_string()],
        None,
        None,
    ))
    .map_err(|e| format!("cannot list the input: {e}"))?;
    Ok(files.remove(0))
}

/// Probes and reads `file` as `import` does; `Some(rows)` when both succeed, `None` for a
/// clean refusal, and `Err` for a broken property.
fn probe_and_read(file: &InputFile) -> Result<Option<u64>, String> {
    let csv = CsvOptions::default();
    let columns = match crate::probe::probe(file, &csv, SAMPLE_ROWS) {
        Ok(columns) => columns,
        Err(e) => return refused(file, e),
    };
    let table_schema = match schema::table_schema(&columns, &file.display) {
        Ok(s) => s,
        Err(e) => return refused(file, e),
    };
    let target = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(&table_schema)
            .map_err(|e| format!("an inferred schema has no Arrow form: {e}"))?,
    );
    let reading = schema::reading_schema(&columns, &target);
    let mut conformed = 0u64;
    let read = read::read(file, &csv, reading, Arc::default(), |batch| {
        conformed += schema::conform(&batch, &target, &file.display)?.num_rows() as u64;
        Ok(())
    });
    match read {
        Ok(rows) if rows == conformed => Ok(Some(rows)),
        Ok(rows) => Err(format!("read {rows} rows but conformed {conformed}")),
        // A quote left open is seen only once the file's end is read.
        Err(e) if e.message.contains("is never closed") => refused(file, e).map(|_| None),
        Err(e) => Err(format!(
            "the probe accepted every row ({columns:?}), then the read failed: {}",
            e.message
        )),
    }
}

/// A refusal must be the user's error, and name the file.
fn refused(file: &InputFile, e: Error) -> Result<Option<u64>, String> {
    if matches!(e.kind(), ErrorKind::Internal) {
        return Err(format!("an internal error: {}", e.message));
    }
    if !e.message.contains(&file.display) {
        return Err(format!("the error does not name the file: {}", e.message));
    }
    Ok(None)
}
