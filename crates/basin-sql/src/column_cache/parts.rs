//! What a column cache keeps, and under which keys: shared by the cache, its decoding and
//! its disk.

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::datasource::listing::PartitionedFile;

/// A data file as a scan names it. Its location alone would do for the warehouse's files,
/// which are never rewritten; the size and time of last write guard against a file replaced
/// under the same name all the same.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct FileKey {
    pub(super) store: String,
    pub(super) path: String,
    pub(super) size: u64,
    pub(super) modified: i64,
}

impl FileKey {
    pub(super) fn new(store: &str, file: &PartitionedFile) -> Self {
        let meta = &file.object_meta;
        Self {
            store: store.to_string(),
            path: meta.location.to_string(),
            size: meta.size,
            modified: meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
        }
    }
}

/// One column of one file, as a scan reads it (its name in the file, the type it is read as,
/// in batches of how many rows: a kept scan zips its columns' batches, so all must be cut
/// alike).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) struct ColumnKey {
    pub(super) file: FileKey,
    pub(super) name: String,
    pub(super) data_type: DataType,
    pub(super) batch: usize,
}

/// A file's row groups: where each begins (its first column's first page, which is how
/// DataFusion assigns a row group to one of a file's byte ranges) and its rows.
#[derive(Debug)]
pub(super) struct Layout {
    pub(super) groups: Vec<(i64, usize)>,
}

/// One column of one file, decoded: for each row group, in the file's order, its rows in
/// batches of the size the session that decoded them reads.
#[derive(Debug)]
pub(super) struct Column {
    pub(super) groups: Vec<Vec<ArrayRef>>,
    /// Each row group's bytes of this column in the file (its chunks, compressed): what the
    /// Parquet scan would read, and a kept scan meters.
    pub(super) stored: Vec<u64>,
    pub(super) bytes: u64,
}

pub(super) fn column_key(
    file: &FileKey,
    name: &str,
    data_type: &DataType,
    batch: usize,
) -> ColumnKey {
    ColumnKey {
        file: file.clone(),
        name: name.to_string(),
        data_type: data_type.clone(),
        batch,
    }
}
