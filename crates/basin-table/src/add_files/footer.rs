//! The Parquet files to add, and their footers.

use std::sync::Arc;

use arrow::datatypes::Schema as ArrowSchema;
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowFileReader;
use iceberg::io::FileIO;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::ParquetMetaData;

use crate::error::{Error, Result};

/// Footers read at once.
const READ_AHEAD: usize = 8;

/// A Parquet file to add: where it lies, as the table will name it, and the Hive partition
/// values its folders give (`key=value` segments below the folder the user named; a value
/// of `__HIVE_DEFAULT_PARTITION__` is null).
#[derive(Clone, Debug)]
pub struct FileToAdd {
    pub location: String,
    pub partition: Vec<(String, Option<String>)>,
}

/// A file's footer, read.
pub struct Footer {
    pub file: FileToAdd,
    pub(super) size: u64,
    pub(super) metadata: Arc<ParquetMetaData>,
    pub(super) schema: ArrowSchema,
}

/// Reads every file's footer (a few at once), naming the file that cannot be read.
pub async fn read_footers(file_io: &FileIO, files: Vec<FileToAdd>) -> Result<Vec<Footer>> {
    futures::stream::iter(files)
        .map(|file| read_footer(file_io, file))
        .buffered(READ_AHEAD)
        .try_collect()
        .await
}

async fn read_footer(file_io: &FileIO, file: FileToAdd) -> Result<Footer> {
    let location = file.location.clone();
    let unreadable = |why: String| {
        Error::invalid(format!(
            "cannot read the Parquet footer of {location}: {why}"
        ))
        .with_hint("add-files takes Parquet files; import other formats with `basin import`")
    };
    let input = file_io
        .new_input(&location)
        .map_err(|e| unreadable(e.message().to_string()))?;
    let meta = input
        .metadata()
        .await
        .map_err(|e| unreadable(e.message().to_string()))?;
    let size = meta.size;
    let reader = input
        .reader()
        .await
        .map_err(|e| unreadable(e.message().to_string()))?;
    let metadata = ArrowFileReader::new(meta, reader)
        .get_metadata(None)
        .await
        .map_err(|e| unreadable(e.to_string()))?;
    let file_metadata = metadata.file_metadata();
    let schema = parquet::arrow::parquet_to_arrow_schema(
        file_metadata.schema_descr(),
        file_metadata.key_value_metadata(),
    )
    .map_err(|e| unreadable(e.to_string()))?;
    Ok(Footer {
        file,
        size,
        metadata,
        schema,
    })
}
