//! One object read the way `basin import` reads it, written as an Arrow IPC file: what a
//! triggered function's `context.read_table()` gets, so that a CSV or JSON object has the
//! same column types there as when it is imported (`decimal(18,2)` for money, not `double`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::datatypes::{Field, Schema};
use basin_core::{Error, Result};

use crate::input_files::{Format, InputFile};
use crate::read::{self, CsvOptions};

/// Rows read to infer column types, by an import and by [`to_arrow_file`] alike.
pub const SAMPLE_ROWS: usize = 10_000;

/// The format Basin reads an object named `key` in, when it infers the object's types:
/// CSV (also `.tsv`, `.tbl`, `.txt`) or newline-delimited JSON. `None` for typed formats
/// (Parquet, Arrow) and names it does not know.
pub fn text_format(key: &str) -> Option<Format> {
    let ext = Path::new(key).extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "txt" => Some(Format::Csv),
        ext => Format::parse(ext)
            .ok()
            .filter(|f| matches!(f, Format::Csv | Format::Json)),
    }
}

/// Reads the file at `path` (known to people as `key`, whose suffix picks the format and the
/// delimiter) with the types an import infers, and writes its rows to `dest` as an Arrow IPC
/// file. Returns the number of rows.
pub fn to_arrow_file(path: &Path, key: &str, format: Format, dest: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("cannot read {key}")).with_source(e))?;
    let file = InputFile::local(key.to_string(), path.to_path_buf(), format, &meta);
    let csv = CsvOptions::default();
    let columns = crate::probe::probe(&file, &csv, SAMPLE_ROWS)?;
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, t)| Field::new(name, t.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let arrow = |e: arrow::error::ArrowError| {
        Error::io(format!("cannot write {}", dest.display())).with_source(e)
    };
    let out = std::fs::File::create(dest)
        .map_err(|e| Error::io(format!("cannot write {}", dest.display())).with_source(e))?;
    let mut writer = arrow::ipc::writer::FileWriter::try_new(std::io::BufWriter::new(out), &schema)
        .map_err(arrow)?;
    let rows = read::read(
        &file,
        &csv,
        schema.clone(),
        Arc::new(AtomicU64::new(0)),
        |batch| writer.write(&batch).map_err(arrow),
    )?;
    writer.finish().map_err(arrow)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;

    use super::*;

    #[test]
    fn an_object_gets_the_types_an_import_infers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("object-0");
        std::fs::write(&path, "id,amount,day\n1,10.50,2024-01-31\n2,3,2024-02-01\n")
            .expect("write");
        let dest = dir.path().join("object-0.arrow");
        let format = text_format("in/orders.csv").expect("a CSV key");
        assert_eq!(
            to_arrow_file(&path, "in/orders.csv", format, &dest).expect("read"),
            2
        );
        let reader = arrow::ipc::reader::FileReader::try_new(
            std::fs::File::open(&dest).expect("open"),
            None,
        )
        .expect("an Arrow file");
        let types: Vec<DataType> = reader
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            [
                DataType::Int64,
                DataType::Decimal128(18, 2),
                DataType::Date32
            ]
        );
        assert_eq!(text_format("a.TSV"), Some(Format::Csv));
        assert_eq!(text_format("a.jsonl"), Some(Format::Json));
        assert_eq!(text_format("a.parquet"), None);
        assert_eq!(text_format("README"), None);
    }

    #[test]
    fn a_malformed_object_says_where() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("object-0");
        std::fs::write(&path, "id,amount\n1,\"10.50\n").expect("write");
        let e = to_arrow_file(
            &path,
            "orders.csv",
            Format::Csv,
            &dir.path().join("t.arrow"),
        )
        .expect_err("an unterminated quote");
        assert!(e.message.contains("orders.csv"), "{}", e.message);
    }
}
