//! Reading CSV, newline-delimited JSON and Parquet files as Arrow batches, streaming, with
//! errors that name the file, line and column.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::compute::kernels::cast_utils::parse_decimal;
use arrow::datatypes::{DataType, Decimal128Type, Field, Schema as ArrowSchema, SchemaRef};
use basin_core::{Error, Result};

use crate::csv_input::{CsvInput, unterminated_quote};
use crate::input_files::{Format, InputFile};
use crate::read_errors::{csv_error, json_error};
use crate::schema::type_name;

pub(crate) const BATCH_ROWS: usize = 64 * 1024;

/// Bytes of CSV after which a batch ends at the next record's end, whatever its rows: with
/// the batches in flight to the Parquet encoders, an import of wide rows holds a few times
/// this, not 65,536 rows of them (40 KB rows: 2.6 GB a batch).
pub(crate) const BATCH_BYTES: usize = 16 << 20;

/// How CSV files are split into fields.
#[derive(Clone, Copy, Debug)]
pub struct CsvOptions {
    /// The field separator; `None` picks by extension (`,`, or tab for `.tsv`, `|` for `.tbl`).
    pub delimiter: Option<u8>,
    pub quote: u8,
    pub header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            quote: b'"',
            header: true,
        }
    }
}

impl CsvOptions {
    /// Options from what a user typed: one ASCII character each for the delimiter (default:
    /// by extension) and the quote (default `"`).
    pub fn from_chars(delimiter: Option<char>, quote: Option<char>, header: bool) -> Result<Self> {
        let ascii = |c: char, what: &str| {
            if c.is_ascii() {
                Ok(c as u8)
            } else {
                Err(Error::invalid(format!(
                    "the {what} must be one ASCII character, not `{c}`"
                )))
            }
        };
        Ok(Self {
            delimiter: delimiter.map(|c| ascii(c, "delimiter")).transpose()?,
            quote: quote.map_or(Ok(b'"'), |c| ascii(c, "quote"))?,
            header,
        })
    }

    pub(crate) fn delimiter_for(&self, file: &InputFile) -> u8 {
        self.delimiter.unwrap_or_else(|| {
            let lower = file.display.to_ascii_lowercase();
            if lower.ends_with(".tsv") {
                b'\t'
            } else if lower.ends_with(".tbl") {
                b'|'
            } else {
                b','
            }
        })
    }
}

pub(crate) fn check_names(file: &InputFile, names: &[String]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(Error::invalid(format!(
                "{}:1: column {} has no name in the header",
                file.display,
                i + 1
            ))
            .with_hint("give every column a name in the first line (or check --delimiter)"));
        }
        if !seen.insert(name) {
            return Err(Error::invalid(format!(
                "{}:1: column `{name}` appears twice in the header",
                file.display
            )));
        }
    }
    Ok(())
}

/// Counts bytes as they are read, for progress.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads `file` with `schema` (its own columns, typed as the table wants), calling `on_batch`
/// for each batch; `read_bytes` grows as the file is consumed.
pub fn read(
    file: &InputFile,
    csv: &CsvOptions,
    schema: SchemaRef,
    read_bytes: Arc<AtomicU64>,
    mut on_batch: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<u64> {
    let handle = File::open(&file.path)
        .map_err(|e| Error::io(format!("cannot open {}", file.display)).with_source(e))?;
    let counting = Counting {
        inner: handle,
        count: read_bytes.clone(),
    };
    let mut rows = 0u64;
    match file.format {
        Format::Csv => rows = read_csv(file, csv, &schema, counting, &mut on_batch)?,
        Format::Json => rows = read_json(file, &schema, counting, &mut on_batch)?,
        Format::Parquet => {
            let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                counting.inner,
            )
            .map_err(|e| Error::invalid(format!("{}: not a Parquet file: {e}", file.display)))?;
            let total_rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
            // Rows of BATCH_BYTES at most, by the row groups' decoded size.
            let decoded: i64 = builder
                .metadata()
                .row_groups()
                .iter()
                .map(|g| g.total_byte_size())
                .sum();
            let per_row = (decoded.max(0) as u64 / total_rows).max(1);
            let batch_rows = (BATCH_BYTES as u64 / per_row).clamp(1, BATCH_ROWS as u64) as usize;
            let reader = builder
                .with_batch_size(batch_rows)
                .build()
                .map_err(|e| Error::invalid(format!("{}: {e}", file.display)))?;
            for batch in reader {
                let batch = batch.map_err(|e| Error::invalid(format!("{}: {e}", file.display)))?;
                rows += batch.num_rows() as u64;
                read_bytes.store(file.size * rows / total_rows, Ordering::Relaxed);
                on_batch(batch)?;
            }
        }
        Format::Arrow => {
            let reader =
                arrow::ipc::reader::FileReader::try_new(BufReader::new(counting.inner), None)
                    .map_err(|e| {
                        Error::invalid(format!("{}: not an Arrow IPC file: {e}", file.display))
                    })?;
            for batch in reader {
                let batch = batch.map_err(|e| Error::invalid(format!("{}: {e}", file.display)))?;
                rows += batch.num_rows() as u64;
                on_batch(batch)?;
            }
        }
    }
    check_unchanged(file)?;
    read_bytes.store(file.size, Ordering::Relaxed);
    Ok(rows)
}

/// Reads a CSV `file` (from `input`) with `schema`, calling `on_batch` for each batch; the
/// rows read.
fn read_csv(
    file: &InputFile,
    csv: &CsvOptions,
    schema: &SchemaRef,
    input: impl Read,
    mut on_batch: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<u64> {
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = 0u64;
    // arrow-csv reports decimal parse errors without a line, so decimals are read as
    // text and parsed here, where the line is known.
    let decimals: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f.data_type(), DataType::Decimal128(..)))
        .map(|(i, _)| i)
        .collect();
    let text_schema = Arc::new(ArrowSchema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Decimal128(..) => Field::new(f.name(), DataType::Utf8, true),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ));
    let first_data_line = if csv.header { 2 } else { 1 };
    let delimiter = csv.delimiter_for(file);
    let (input, unterminated) = CsvInput::new(input, csv.quote, delimiter);
    // A batch ends at BATCH_ROWS rows, or at the first record's end past BATCH_BYTES.
    let (input, cuts) = input.cut_every(BATCH_BYTES);
    let mut decoder = arrow::csv::ReaderBuilder::new(text_schema)
        .with_header(csv.header)
        .with_delimiter(delimiter)
        .with_quote(csv.quote)
        .with_batch_size(BATCH_ROWS)
        .build_decoder();
    let mut reader = BufReader::with_capacity(1 << 20, input);
    // A field left open swallows the rest of the file, so the last record may also
    // have too few fields: the open quote is the cause to report.
    let failed = |e: arrow::error::ArrowError| match unterminated.line() {
        Some(line) => unterminated_quote(file, line),
        None => csv_error(file, &names, e),
    };
    let mut emit = |batch: Option<RecordBatch>| -> Result<()> {
        let Some(batch) = batch else { return Ok(()) };
        let batch = parse_decimals(file, batch, schema, &decimals, rows + first_data_line)?;
        rows += batch.num_rows() as u64;
        on_batch(batch)
    };
    loop {
        let buf = reader.fill_buf().map_err(|e| failed(e.into()))?;
        if buf.is_empty() && cuts.take() {
            emit(decoder.flush().map_err(failed)?)?;
            continue;
        }
        // An empty buffer is the end: the decoder ends the last record.
        let end = buf.is_empty();
        let decoded = decoder.decode(buf).map_err(failed)?;
        reader.consume(decoded);
        if end || decoded == 0 || decoder.capacity() == 0 {
            emit(decoder.flush().map_err(failed)?)?;
        }
        if end {
            break;
        }
    }
    if let Some(line) = unterminated.line() {
        return Err(unterminated_quote(file, line));
    }
    Ok(rows)
}

/// Reads a newline-delimited JSON `file` (from `input`) with `schema`, as [`read_csv`].
fn read_json(
    file: &InputFile,
    schema: &SchemaRef,
    input: impl Read,
    mut on_batch: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<u64> {
    let mut rows = 0u64;
    // Strict: a key the sample did not see is an error, never silently dropped.
    // Numbers and booleans in a text column (inferred from mixed values) are
    // read as their text.
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_strict_mode(true)
        .with_coerce_primitive(true)
        .with_batch_size(BATCH_ROWS)
        .build_decoder()
        .map_err(|e| Error::invalid(format!("{}: {e}", file.display)))?;
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut flush = |decoder: &mut arrow::json::reader::Decoder, rows: &mut u64| {
        let batch = decoder
            .flush()
            .map_err(|e| json_error(file, schema, *rows, e))?;
        let Some(batch) = batch else { return Ok(()) };
        *rows += batch.num_rows() as u64;
        on_batch(batch)
    };
    // Bytes given to the decoder since its last batch: past BATCH_BYTES, it is given
    // whole lines only, and the batch ends at the last of them.
    let mut fed = 0;
    loop {
        let buf = reader
            .fill_buf()
            .map_err(|e| Error::io_with(format!("cannot read {}", file.display), e))?;
        if buf.is_empty() {
            break;
        }
        let take = match fed + buf.len() > BATCH_BYTES {
            true => memchr::memrchr(b'\n', buf).map_or(buf.len(), |at| at + 1),
            false => buf.len(),
        };
        let decoded = decoder
            .decode(&buf[..take])
            .map_err(|e| json_error(file, schema, rows, e))?;
        reader.consume(decoded);
        fed += decoded;
        if decoded < take || (fed > BATCH_BYTES && !decoder.has_partial_record()) {
            flush(&mut decoder, &mut rows)?;
            fed = 0;
        }
    }
    flush(&mut decoder, &mut rows)?;
    Ok(rows)
}

/// Fails if `file` is no longer the size and age it had when the import listed it: it was
/// written to (or replaced) while being read, so what was read may be neither old nor new.
fn check_unchanged(file: &InputFile) -> Result<()> {
    let now = std::fs::metadata(&file.path)
        .map_err(|e| Error::io(format!("cannot read {}", file.display)).with_source(e))?;
    if now.len() != file.size || now.modified().ok() != file.modified {
        return Err(Error::io(format!(
            "{}: the file changed while it was being read ({} bytes when listed, {} now)",
            file.display,
            file.size,
            now.len()
        ))
        .with_hint("import it again once it is complete; a writer should write elsewhere and move the finished file in"));
    }
    Ok(())
}

/// Turns arrow-csv's errors into ones that name the file, the line and the column.
fn parse_decimals(
    file: &InputFile,
    batch: RecordBatch,
    schema: &SchemaRef,
    decimals: &[usize],
    first_line: u64,
) -> Result<RecordBatch> {
    if decimals.is_empty() {
        return Ok(batch);
    }
    let mut columns = batch.columns().to_vec();
    for &i in decimals {
        let field = schema.field(i);
        let DataType::Decimal128(precision, scale) = *field.data_type() else {
            continue;
        };
        let text = columns[i]
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("decimals are read as text");
        let mut builder = arrow::array::Decimal128Builder::with_capacity(text.len());
        for (row, value) in text.iter().enumerate() {
            let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
                builder.append_null();
                continue;
            };
            // arrow's parser drops digits past the scale; Basin keeps decimals exact.
            let fraction = v
                .split_once('.')
                .map_or("", |(_, f)| f)
                .trim_end_matches('0');
            let parsed = (fraction.len() <= scale.max(0) as usize)
                .then(|| parse_decimal::<Decimal128Type>(v, precision, scale).ok())
                .flatten();
            match parsed {
                Some(n) => builder.append_value(n),
                None => {
                    let wanted = type_name(field.data_type());
                    return Err(Error::invalid(format!(
                        "{}:{}: column `{}`: `{v}` is not a valid {wanted}",
                        file.display,
                        first_line + row as u64,
                        field.name()
                    ))
                    .with_hint(format!(
                        "fix the value, or store `{}` as another type (it is {wanted} in the table or in the rows sampled to infer it)",
                        field.name()
                    )));
                }
            }
        }
        let array = builder
            .finish()
            .with_precision_and_scale(precision, scale)
            .map_err(|e| Error::internal(format!("decimal column `{}`: {e}", field.name())))?;
        columns[i] = Arc::new(array);
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::internal(format!("{}: {e}", file.display)))
}

/// Pins a JSON decoding error to its line by decoding the failing batch again one line at a
/// time (only on the error path).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::input_files;
    use crate::probe::probe;

    async fn input_file(dir: &std::path::Path, name: &str, text: &[u8]) -> InputFile {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let mut files = input_files::expand(&[path.display().to_string()], None, None)
            .await
            .unwrap();
        files.remove(0)
    }

    /// Reads a CSV file as text columns; returns its rows as strings, or the error.
    fn read_csv(file: &InputFile) -> Result<Vec<Vec<String>>> {
        let csv = CsvOptions::default();
        let names: Vec<String> = probe(file, &csv, 100)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let schema = Arc::new(ArrowSchema::new(
            names
                .iter()
                .map(|n| Field::new(n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let mut rows = vec![names];
        read(file, &csv, schema, Arc::default(), |batch| {
            for r in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .map(|c| {
                            let c = c.as_any().downcast_ref::<StringArray>().unwrap();
                            if c.is_valid(r) { c.value(r) } else { "" }.to_string()
                        })
                        .collect(),
                );
            }
            Ok(())
        })?;
        Ok(rows)
    }

    fn rows(text: &[&[&str]]) -> Vec<Vec<String>> {
        text.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[tokio::test]
    async fn a_file_ending_inside_a_quoted_field_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = input_file(
            dir.path(),
            "cut.csv",
            b"id,name\n1,a\n2,\"b\"\n3,\"multi\nline\"\n4,\"unterminated\n5,e\n",
        )
        .await;
        let e = read_csv(&file).unwrap_err();
        assert_eq!(e.kind(), basin_core::ErrorKind::InvalidInput);
        assert!(
            e.message.starts_with(&format!("{}:6: ", file.display)),
            "{}",
            e.message
        );
        assert!(e.hint.is_some());

        // The same with more columns, where the swallowed rest also miscounts the fields.
        let file = input_file(dir.path(), "cut3.csv", b"a,b,c\n1,2,3\n4,\"x,5\n6,7,8\n").await;
        let e = read_csv(&file).unwrap_err();
        assert!(e.message.contains("cut3.csv:3: "), "{}", e.message);
    }

    #[tokio::test]
    async fn quotes_that_are_closed_or_literal_are_read_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let file = input_file(
            dir.path(),
            "ok.csv",
            b"a,b\n5\" pipe,\"say \"\"hi\"\"\"\n\"x\ny\",\"\"\n",
        )
        .await;
        assert_eq!(
            read_csv(&file).unwrap(),
            rows(&[&["a", "b"], &["5\" pipe", "say \"hi\""], &["x\ny", ""]])
        );
    }

    #[tokio::test]
    async fn a_byte_order_mark_is_not_part_of_the_first_column_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = input_file(dir.path(), "bom.csv", b"\xEF\xBB\xBFid,name\n1,a\n").await;
        assert_eq!(
            read_csv(&file).unwrap(),
            rows(&[&["id", "name"], &["1", "a"]])
        );
        let types = probe(&file, &CsvOptions::default(), 100).unwrap();
        assert_eq!(types[0], ("id".to_string(), DataType::Int64));
    }

    #[tokio::test]
    async fn crlf_line_endings_leave_no_carriage_return_in_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = input_file(
            dir.path(),
            "crlf.csv",
            b"id,name\r\n1,a\r\n2,\"b\r\nc\"\r\n",
        )
        .await;
        assert_eq!(
            read_csv(&file).unwrap(),
            rows(&[&["id", "name"], &["1", "a"], &["2", "b\r\nc"]])
        );
    }

    #[tokio::test]
    async fn an_empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = input_file(dir.path(), "empty.csv", b"").await;
        let e = read_csv(&file).unwrap_err();
        assert_eq!(e.kind(), basin_core::ErrorKind::InvalidInput);
        assert!(
            e.message.contains("empty.csv: the file is empty"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_header_only_file_reads_as_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let file = input_file(dir.path(), "header.csv", b"id,name\n").await;
        assert_eq!(read_csv(&file).unwrap(), rows(&[&["id", "name"]]));
    }

    #[tokio::test]
    async fn a_file_that_changes_while_it_is_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = input_file(dir.path(), "growing.csv", b"id\n1\n2\n").await;
        let csv = CsvOptions::default();
        let schema = Arc::new(ArrowSchema::new(vec![Field::new(
            "id",
            DataType::Utf8,
            true,
        )]));
        let path = file.path.clone();
        let mut appended = false;
        // Another program appends to it (once) while the import reads it.
        let e = read(&file, &csv, schema, Arc::default(), |_| {
            use std::io::Write;
            if !std::mem::replace(&mut appended, true) {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                f.write_all(b"3\n").unwrap();
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e.kind(), basin_core::ErrorKind::Io);
        assert!(
            e.message
                .contains("growing.csv: the file changed while it was being read"),
            "{}",
            e.message
        );
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn wide_rows_come_in_batches_of_bytes_not_of_rows() {
        let dir = std::env::temp_dir().join(format!("wide-{}", basin_core::ids::random()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wide.csv");
        let wide = "w".repeat(40_000);
        let mut text = String::from("id,text\n");
        for i in 0..1200 {
            text.push_str(&format!("{i},{wide}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let file = InputFile::local("wide.csv".into(), path.clone(), Format::Csv, &meta);
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("text", DataType::Utf8, true),
        ]));
        let mut batches = Vec::new();
        let rows = read(&file, &CsvOptions::default(), schema, Arc::default(), |b| {
            batches.push((b.num_rows(), b.get_array_memory_size()));
            Ok(())
        })
        .unwrap();
        assert_eq!(rows, 1200);
        assert!(batches.len() >= 3, "{batches:?}");
        assert!(
            batches.iter().all(|&(_, bytes)| bytes < 4 * BATCH_BYTES),
            "{batches:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
