//! Query answers as files, written batch by batch so that a server can stream them: CSV
//! (a header line; decimals with their scale, integers whole), Parquet, and Arrow IPC
//! streams. `basin query --format csv|parquet` and the HTTP API's downloads write the same
//! bytes through [`FileWriter`].
//!
//! ```
//! # use std::sync::Arc;
//! # use arrow::array::{Decimal128Array, RecordBatch};
//! use basin_sql::export::{FileFormat, FileWriter};
//! let amount = Decimal128Array::from(vec![1050]).with_precision_and_scale(18, 2).unwrap();
//! let batch = RecordBatch::try_from_iter([("amount", Arc::new(amount) as _)]).unwrap();
//! let mut writer = FileWriter::try_new(Vec::new(), FileFormat::Csv, batch.schema()).unwrap();
//! writer.write(&batch).unwrap();
//! assert_eq!(writer.finish().unwrap(), b"amount\n10.50\n");
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use basin_core::{Error, Result};

/// A file format query answers can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Parquet,
    /// An Arrow IPC stream.
    Arrow,
}

impl FileFormat {
    /// `csv`, `parquet` or `arrow`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "csv" => Ok(Self::Csv),
            "parquet" => Ok(Self::Parquet),
            "arrow" => Ok(Self::Arrow),
            other => Err(Error::invalid(format!("`{other}` is not a file format"))
                .with_hint("use csv, parquet or arrow")),
        }
    }

    pub const fn media_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Parquet => "application/vnd.apache.parquet",
            Self::Arrow => "application/vnd.apache.arrow.stream",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
            Self::Arrow => "arrows",
        }
    }
}

/// A Parquet answer's row group closes (and its bytes go out) once it holds this much.
pub const ROW_GROUP_BYTES: usize = 64 << 20;

/// Writes batches into `W` in one [`FileFormat`].
pub struct FileWriter<W: Write + Send> {
    inner: Inner<W>,
    schema: SchemaRef,
    wrote: bool,
}

enum Inner<W: Write + Send> {
    Csv(Box<arrow::csv::Writer<W>>),
    Parquet(Box<parquet::arrow::ArrowWriter<W>>),
    Arrow(arrow::ipc::writer::StreamWriter<W>),
}

impl<W: Write + Send> FileWriter<W> {
    pub fn try_new(out: W, format: FileFormat, schema: SchemaRef) -> Result<Self> {
        let inner = match format {
            FileFormat::Csv => Inner::Csv(Box::new(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            )),
            FileFormat::Parquet => {
                let properties = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .build();
                Inner::Parquet(Box::new(
                    parquet::arrow::ArrowWriter::try_new(out, schema.clone(), Some(properties))
                        .map_err(parquet_error)?,
                ))
            }
            FileFormat::Arrow => Inner::Arrow(
                arrow::ipc::writer::StreamWriter::try_new(out, &schema).map_err(arrow_error)?,
            ),
        };
        Ok(Self {
            inner,
            schema,
            wrote: false,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.wrote = true;
        match &mut self.inner {
            Inner::Csv(w) => w.write(batch).map_err(arrow_error),
            Inner::Parquet(w) => {
                w.write(batch).map_err(parquet_error)?;
                // A row group is held in memory until it closes, outside the query's memory
                // limits; close it at a size, not only at parquet's million rows.
                if w.in_progress_size() >= ROW_GROUP_BYTES {
                    w.flush().map_err(parquet_error)?;
                }
                Ok(())
            }
            // Arrow's IPC writer sends every buffer a column points into, whole: q10's twenty
            // rows at scale 10 were 115 MB of customers' comments.
            Inner::Arrow(w) => w
                .write(&crate::results::compact(batch))
                .map_err(arrow_error),
        }
    }

    /// Ends the file (a CSV answer without rows still has its header) and gives `W` back.
    pub fn finish(mut self) -> Result<W> {
        if !self.wrote && matches!(self.inner, Inner::Csv(_)) {
            self.write(&RecordBatch::new_empty(self.schema.clone()))?;
        }
        match self.inner {
            Inner::Csv(w) => Ok(w.into_inner()),
            Inner::Parquet(w) => w.into_inner().map_err(parquet_error),
            Inner::Arrow(w) => w.into_inner().map_err(arrow_error),
        }
    }
}

fn arrow_error(e: arrow::error::ArrowError) -> Error {
    Error::internal("cannot write the answer").with_source(e)
}

fn parquet_error(e: parquet::errors::ParquetError) -> Error {
    Error::internal("cannot write the answer as Parquet").with_source(e)
}

/// A `Write` whose bytes are taken out while a [`FileWriter`] still owns it, so that a file
/// streams out as it is written instead of waiting for its end.
#[derive(Clone, Debug, Default)]
pub struct Drain(Arc<Mutex<Vec<u8>>>);

impl Drain {
    /// The bytes written since the last call.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Write for Drain {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn batch(ids: &[i64]) -> RecordBatch {
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids.to_vec())) as _),
            ("name", Arc::new(StringArray::from(names)) as _),
        ])
        .expect("batch")
    }

    #[test]
    fn a_parquet_answer_goes_out_before_a_row_group_holds_more_than_its_size() {
        // 1,000 rows of 4 KiB strings a batch (4 MiB), no two alike (so neither dictionary
        // encoding nor compression shrinks them): far fewer rows than parquet's million-row
        // groups, so only the size closes a group.
        const BATCH: usize = 4 << 20;
        let mut seed = 1u64;
        let mut big = || {
            let rows: Vec<String> = (0..1000)
                .map(|_| {
                    (0..256)
                        .map(|_| {
                            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                            format!("{:016x}", seed)
                        })
                        .collect()
                })
                .collect();
            RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(rows)) as _)])
                .expect("batch")
        };
        let first = big();
        let drain = Drain::default();
        let mut writer =
            FileWriter::try_new(drain.clone(), FileFormat::Parquet, first.schema()).expect("new");
        writer.write(&first).expect("write");
        let (mut written, mut sent) = (BATCH, drain.take().len());
        for _ in 0..24 {
            writer.write(&big()).expect("write");
            written += BATCH;
            sent += drain.take().len();
            let held = written.saturating_sub(sent);
            assert!(
                held <= ROW_GROUP_BYTES + 2 * BATCH,
                "{held} bytes held unsent"
            );
        }
        writer.finish().expect("finish");
    }

    #[test]
    fn a_drained_parquet_file_reads_back_whole() {
        let drain = Drain::default();
        let first = batch(&[1, 9_007_199_254_740_993]);
        let mut writer =
            FileWriter::try_new(drain.clone(), FileFormat::Parquet, first.schema()).expect("new");
        let mut file = Vec::new();
        for b in [first, batch(&[3])] {
            writer.write(&b).expect("write");
            file.extend(drain.take());
        }
        writer.finish().expect("finish");
        file.extend(drain.take());
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            bytes::Bytes::from(file),
            1024,
        )
        .expect("parquet");
        let ids: Vec<i64> = reader
            .flat_map(|b| {
                let b = b.expect("batch");
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("ids")
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, [1, 9_007_199_254_740_993, 3]);
    }

    #[test]
    fn a_csv_answer_without_rows_keeps_its_header() {
        let schema = batch(&[]).schema();
        let writer = FileWriter::try_new(Vec::new(), FileFormat::Csv, schema).expect("new");
        assert_eq!(writer.finish().expect("finish"), b"id,name\n");
    }

    #[test]
    fn unknown_formats_are_named() {
        let e = FileFormat::parse("xlsx").expect_err("unknown");
        assert!(e.message.contains("`xlsx`"), "{e}");
    }
}
