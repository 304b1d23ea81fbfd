//! A file's columns and their types before anything is written: read from a Parquet or
//! Arrow file's schema, inferred from a sample of a CSV or JSON file's rows.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use basin_core::{Error, Result};

use crate::csv_input::CsvInput;
use crate::infer::infer_column;
use crate::input_files::{Format, InputFile};
use crate::read::{CsvOptions, check_names};
use crate::read_errors::csv_error;

/// Rows a sample is read in, and the bytes of them it stops at, whatever `sample_rows` says:
/// 10,000 rows of 40 KB are 400 MB.
const SAMPLE_BATCH_ROWS: usize = 256;
const SAMPLE_BYTES: usize = 16 << 20;

/// A file's columns and their inferred types, reading at most `sample_rows` rows.
pub fn probe(
    file: &InputFile,
    csv: &CsvOptions,
    sample_rows: usize,
) -> Result<Vec<(String, DataType)>> {
    if file.size == 0 {
        return Err(Error::invalid(format!("{}: the file is empty", file.display)).with_hint(
            "an import needs at least a header line (CSV) or one row; check that the file was written completely",
        ));
    }
    let columns = match file.format {
        Format::Csv => probe_csv(file, csv, sample_rows)?,
        Format::Json => probe_json(file, sample_rows)?,
        Format::Parquet => {
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(open(file)?)
                    .map_err(|e| {
                        Error::invalid(format!("{}: not a Parquet file: {e}", file.display))
                    })?;
            builder
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        }
        Format::Arrow => {
            let reader =
                arrow::ipc::reader::FileReader::try_new(open(file)?, None).map_err(|e| {
                    Error::invalid(format!("{}: not an Arrow IPC file: {e}", file.display))
                })?;
            reader
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        }
    };
    if columns.is_empty() {
        return Err(
            Error::invalid(format!("{}: the file has no columns", file.display))
                .with_hint("check that its rows hold values (JSON: objects with keys)"),
        );
    }
    Ok(columns)
}

fn open(file: &InputFile) -> Result<File> {
    File::open(&file.path)
        .map_err(|e| Error::io(format!("cannot open {}", file.display)).with_source(e))
}

/// A CSV file's header, and each column's type inferred from up to `sample_rows` rows read
/// as text.
fn probe_csv(
    file: &InputFile,
    csv: &CsvOptions,
    sample_rows: usize,
) -> Result<Vec<(String, DataType)>> {
    let delimiter = csv.delimiter_for(file);
    let format = arrow::csv::reader::Format::default()
        .with_header(csv.header)
        .with_delimiter(delimiter)
        .with_quote(csv.quote);
    let (header, _) = format
        .infer_schema(CsvInput::new(open(file)?, csv.quote, delimiter).0, Some(1))
        .map_err(|e| csv_error(file, &[], e))?;
    let names: Vec<String> = header.fields().iter().map(|f| f.name().clone()).collect();
    check_names(file, &names)?;
    let text = Arc::new(ArrowSchema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(text)
        .with_header(csv.header)
        .with_delimiter(delimiter)
        .with_quote(csv.quote)
        .with_batch_size(sample_rows.clamp(1, SAMPLE_BATCH_ROWS))
        .build(BufReader::new(
            CsvInput::new(open(file)?, csv.quote, delimiter).0,
        ))
        .map_err(|e| csv_error(file, &names, e))?;
    let mut batches = Vec::new();
    let (mut rows, mut bytes) = (0, 0);
    for batch in reader {
        let batch = batch.map_err(|e| csv_error(file, &names, e))?;
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
        batches.push(batch);
        if rows >= sample_rows || bytes >= SAMPLE_BYTES {
            break;
        }
    }
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let values: Vec<Option<&str>> = batches
                .iter()
                .flat_map(|b| {
                    let col = b
                        .column(i)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .expect("read as text");
                    col.iter()
                })
                .collect();
            (name.clone(), infer_column(&StringArray::from(values)))
        })
        .collect())
}

/// A JSON file's columns as arrow infers them from up to `sample_rows` lines, text columns
/// of dates or timestamps taken as such.
fn probe_json(file: &InputFile, sample_rows: usize) -> Result<Vec<(String, DataType)>> {
    let mut reader = BufReader::new(open(file)?);
    let (schema, _) =
        arrow::json::reader::infer_json_schema_from_seekable(&mut reader, Some(sample_rows))
            .map_err(|e| {
                Error::invalid(format!("{}: not newline-delimited JSON: {e}", file.display))
                    .with_hint("each line must hold one JSON object")
            })?;
    let mut columns: Vec<(String, DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    // JSON has no date type: text columns whose sampled values are all dates or
    // timestamps become DATE or TIMESTAMP, as they would in a CSV file.
    if columns.iter().any(|(_, t)| *t == DataType::Utf8) {
        let schema = Arc::new(schema);
        let reader = arrow::json::ReaderBuilder::new(schema.clone())
            .with_batch_size(sample_rows.clamp(1, SAMPLE_BATCH_ROWS))
            .build(BufReader::new(open(file)?))
            .ok();
        let (mut batches, mut rows, mut bytes) = (Vec::new(), 0, 0);
        for batch in reader.into_iter().flatten().map_while(|b| b.ok()) {
            rows += batch.num_rows();
            bytes += batch.get_array_memory_size();
            batches.push(batch);
            if rows >= sample_rows || bytes >= SAMPLE_BYTES {
                break;
            }
        }
        let sample = arrow::compute::concat_batches(&schema, &batches).ok();
        if let Some(batch) = sample {
            for (i, (_, data_type)) in columns.iter_mut().enumerate() {
                let Some(text) = batch.column(i).as_any().downcast_ref::<StringArray>() else {
                    continue;
                };
                let inferred = infer_column(text);
                if matches!(inferred, DataType::Date32 | DataType::Timestamp(..)) {
                    *data_type = inferred;
                }
            }
        }
    }
    Ok(columns)
}
