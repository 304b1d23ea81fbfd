//! Writes Arrow batches into Parquet data files of one table, split by its partition spec.

use std::collections::HashMap;

use arrow::record_batch::RecordBatch;
use iceberg::arrow::{FieldMatchMode, RecordBatchPartitionSplitter};
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::DefaultFileNameGenerator;
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result, from_iceberg};
use crate::locations::TableLocations;

type Builder =
    DataFileWriterBuilder<ParquetWriterBuilder, TableLocations, DefaultFileNameGenerator>;

/// Data files roll over at this size unless the table says otherwise: big enough for
/// efficient scans, small enough that a scan of a large table spreads over several files
/// (and cores).
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// The Iceberg table property for the size data files roll over at.
pub const TARGET_FILE_SIZE: &str = "write.target-file-size-bytes";

/// The table's target data file size: its `write.target-file-size-bytes`, else the default.
pub fn target_file_size(properties: &HashMap<String, String>) -> u64 {
    properties
        .get(TARGET_FILE_SIZE)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_TARGET_FILE_SIZE)
}

/// The Iceberg table property (as PyIceberg names it) for the rows of a Parquet row group.
pub const ROW_GROUP_LIMIT: &str = "write.parquet.row-group-limit";

/// Rows per row group unless the table says otherwise: a row group is the unit DataFusion
/// spreads a scan over cores with, so a 200,000-row table makes two instead of parquet's
/// one-million-row default making one (issue #18's A/B in docs/benchmarks/sql.md).
pub const DEFAULT_ROW_GROUP_ROWS: usize = 128 * 1024;

/// The table's row group size: its `write.parquet.row-group-limit`, else the default.
fn row_group_rows(properties: &HashMap<String, String>) -> usize {
    properties
        .get(ROW_GROUP_LIMIT)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_ROW_GROUP_ROWS)
}

/// The Iceberg table properties for the Parquet codec of data files, and its level.
pub const COMPRESSION_CODEC: &str = "write.parquet.compression-codec";
pub const COMPRESSION_LEVEL: &str = "write.parquet.compression-level";

/// The codec Basin writes unless the table says otherwise (and records on the tables it
/// creates).
pub const DEFAULT_COMPRESSION_CODEC: &str = "snappy";

/// The codecs `write.parquet.compression-codec` may name, as Iceberg spells them.
const CODECS: [&str; 7] = [
    "snappy",
    "zstd",
    "lz4_raw",
    "lz4",
    "gzip",
    "brotli",
    "uncompressed",
];

/// The table's Parquet codec: its `write.parquet.compression-codec` (with
/// `write.parquet.compression-level` for zstd, gzip and brotli), else Snappy. A codec or level
/// the writer does not know is an error rather than another codec in silence.
fn compression(table: &str, properties: &HashMap<String, String>) -> Result<Compression> {
    let codec = properties
        .get(COMPRESSION_CODEC)
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_else(|| DEFAULT_COMPRESSION_CODEC.to_string());
    let level = properties.get(COMPRESSION_LEVEL).map(|v| v.trim());
    let bad_level = |why: String| {
        Error::invalid(format!(
            "table `{table}`: `{COMPRESSION_LEVEL}` `{}` {why}",
            level.unwrap_or_default()
        ))
        .with_hint(format!(
            "set `{COMPRESSION_LEVEL}` to a level the codec takes, or remove it, through the \
             Iceberg REST catalog (`set-properties`, `remove-properties`)"
        ))
    };
    let number = || match level {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i32>()
            .map(Some)
            .map_err(|_| bad_level("is not a number".to_string())),
    };
    let compression = match codec.as_str() {
        "snappy" => Compression::SNAPPY,
        "uncompressed" | "none" => Compression::UNCOMPRESSED,
        "lz4_raw" => Compression::LZ4_RAW,
        "lz4" => Compression::LZ4,
        "zstd" => Compression::ZSTD(match number()? {
            Some(n) => ZstdLevel::try_new(n).map_err(|e| bad_level(e.to_string()))?,
            None => ZstdLevel::default(),
        }),
        "gzip" => Compression::GZIP(match number()? {
            Some(n) => u32::try_from(n)
                .map_err(|e| e.to_string())
                .and_then(|n| GzipLevel::try_new(n).map_err(|e| e.to_string()))
                .map_err(bad_level)?,
            None => GzipLevel::default(),
        }),
        "brotli" => Compression::BROTLI(match number()? {
            Some(n) => u32::try_from(n)
                .map_err(|e| e.to_string())
                .and_then(|n| BrotliLevel::try_new(n).map_err(|e| e.to_string()))
                .map_err(bad_level)?,
            None => BrotliLevel::default(),
        }),
        other => {
            return Err(Error::invalid(format!(
                "table `{table}`: `{COMPRESSION_CODEC}` `{other}` is not a codec Basin writes"
            ))
            .with_hint(format!(
                "set it to one of {} through the Iceberg REST catalog (`set-properties`)",
                CODECS.join(", ")
            )));
        }
    };
    Ok(compression)
}

// One writer per import: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Unpartitioned(DataFileWriter<ParquetWriterBuilder, TableLocations, DefaultFileNameGenerator>),
    Partitioned {
        writer: FanoutWriter<Builder>,
        splitter: RecordBatchPartitionSplitter,
    },
}

/// Writes batches whose columns follow the table's current schema, in order and with the
/// Arrow types iceberg maps it to. Files are invisible until their table change is committed.
pub struct TableWriter {
    inner: Inner,
    rows: u64,
}

impl TableWriter {
    /// A writer whose files roll over at the table's target size ([`target_file_size`]).
    pub async fn new(table: &Table) -> Result<Self> {
        Self::with_target_size(table, target_file_size(table.metadata().properties())).await
    }

    /// A writer whose files roll over at `target_bytes`.
    pub async fn with_target_size(table: &Table, target_bytes: u64) -> Result<Self> {
        let context = format!("cannot write data files for `{}`", table.identifier());
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let codec = compression(&table.identifier().to_string(), metadata.properties())?;
        let properties = WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_row_count(Some(row_group_rows(metadata.properties())))
            .build();
        let parquet = ParquetWriterBuilder::new_with_match_mode(
            properties,
            schema.clone(),
            FieldMatchMode::Name,
        );
        // A unique prefix per writer: iceberg's generator numbers files from 0.
        let names = DefaultFileNameGenerator::new(
            basin_core::ids::ordered(),
            None,
            DataFileFormat::Parquet,
        );
        let locations = TableLocations::new(metadata);
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            usize::try_from(target_bytes).unwrap_or(usize::MAX),
            table.file_io().clone(),
            locations,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let spec = metadata.default_partition_spec();
        let inner = if spec.is_unpartitioned() {
            Inner::Unpartitioned(builder.build(None).await.map_err(from_iceberg(&context))?)
        } else {
            let splitter =
                RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec.clone())
                    .map_err(from_iceberg(&context))?;
            Inner::Partitioned {
                writer: FanoutWriter::new(builder),
                splitter,
            }
        };
        Ok(Self { inner, rows: 0 })
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        match &mut self.inner {
            Inner::Unpartitioned(writer) => writer
                .write(batch)
                .await
                .map_err(from_iceberg("cannot write a data file")),
            Inner::Partitioned { writer, splitter } => {
                for (key, part) in splitter
                    .split(&batch)
                    .map_err(from_iceberg("cannot partition rows"))?
                {
                    writer
                        .write(key, part)
                        .await
                        .map_err(from_iceberg("cannot write a data file"))?;
                }
                Ok(())
            }
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Finishes the open files and returns them, ready for a table change.
    pub async fn close(self) -> Result<Vec<DataFile>> {
        match self.inner {
            Inner::Unpartitioned(mut writer) => writer
                .close()
                .await
                .map_err(from_iceberg("cannot finish a data file")),
            Inner::Partitioned { writer, .. } => writer
                .close()
                .await
                .map_err(from_iceberg("cannot finish a data file")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use parquet::basic::{Compression, ZstdLevel};

    use super::{
        COMPRESSION_CODEC, COMPRESSION_LEVEL, DEFAULT_ROW_GROUP_ROWS, ROW_GROUP_LIMIT, compression,
        row_group_rows,
    };

    #[test]
    fn row_groups_follow_the_table_property_else_the_default() {
        let with = |v: &str| HashMap::from([(ROW_GROUP_LIMIT.to_string(), v.to_string())]);
        assert_eq!(row_group_rows(&HashMap::new()), DEFAULT_ROW_GROUP_ROWS);
        assert_eq!(row_group_rows(&with("1000")), 1000);
        // Nonsense falls back rather than failing a write.
        assert_eq!(row_group_rows(&with("0")), DEFAULT_ROW_GROUP_ROWS);
        assert_eq!(row_group_rows(&with("many")), DEFAULT_ROW_GROUP_ROWS);
    }

    #[test]
    fn the_codec_follows_the_table_property_and_a_codec_not_known_is_an_error() {
        let with = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let codec = |pairs: &[(&str, &str)]| compression("db.t", &with(pairs));
        assert_eq!(codec(&[]).unwrap(), Compression::SNAPPY);
        assert_eq!(
            codec(&[(COMPRESSION_CODEC, "LZ4_RAW")]).unwrap(),
            Compression::LZ4_RAW
        );
        assert_eq!(
            codec(&[(COMPRESSION_CODEC, "uncompressed")]).unwrap(),
            Compression::UNCOMPRESSED
        );
        assert_eq!(
            codec(&[(COMPRESSION_CODEC, "zstd"), (COMPRESSION_LEVEL, "9")]).unwrap(),
            Compression::ZSTD(ZstdLevel::try_new(9).unwrap())
        );
        assert_eq!(
            codec(&[(COMPRESSION_CODEC, "zstd")]).unwrap(),
            Compression::ZSTD(ZstdLevel::default())
        );
        // A level for a codec without levels is not used.
        assert_eq!(
            codec(&[(COMPRESSION_CODEC, "snappy"), (COMPRESSION_LEVEL, "3")]).unwrap(),
            Compression::SNAPPY
        );
        let e = codec(&[(COMPRESSION_CODEC, "lzo")]).unwrap_err();
        assert!(
            e.to_string().contains("db.t") && e.to_string().contains("`lzo`"),
            "{e}"
        );
        assert!(
            e.hint.as_deref().is_some_and(|h| h.contains("zstd")),
            "{e:?}"
        );
        let e = codec(&[(COMPRESSION_CODEC, "zstd"), (COMPRESSION_LEVEL, "99")]).unwrap_err();
        assert!(e.to_string().contains(COMPRESSION_LEVEL), "{e}");
        let e = codec(&[(COMPRESSION_CODEC, "gzip"), (COMPRESSION_LEVEL, "high")]).unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
    }
}
