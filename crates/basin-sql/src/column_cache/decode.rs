//! A data file's columns decoded from its Parquet pages into the arrays a cache keeps.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::DataType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::DefaultParquetFileReaderFactory;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::TryStreamExt;
use object_store::ObjectStore;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::ParquetMetaData;

use super::parts::{Column, Layout};

/// `file`'s row groups, and each of `wanted`'s columns decoded as its type (`None` where
/// the file lacks the column, its type does not convert, or it grew past a quarter of the
/// cache's `limit`), in batches of `size` rows. A file whose columns together grow past
/// `limit` is not decoded further (an error: its columns are refused).
///
/// Each batch is decoded on its own, as the Parquet scan decodes it, and strings read as
/// views are copied into buffers of their own batch (arrow's `gc`): no two batches share a
/// buffer, so an operator that holds many of them (a join's build side) counts its memory
/// right, and the pages the strings were decoded from are not kept.
pub(super) async fn decode(
    store: Arc<dyn ObjectStore>,
    file: PartitionedFile,
    wanted: &[(String, DataType)],
    size: usize,
    limit: u64,
) -> Result<(Layout, Vec<Option<Column>>), String> {
    let most = limit / 4;
    let mut total = 0;
    let reader: Box<dyn AsyncFileReader> = DefaultParquetFileReaderFactory::new(store)
        .create_reader(0, file, None, &ExecutionPlanMetricsSet::new())
        .map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| e.to_string())?;
    let groups: Vec<(i64, usize)> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|group| {
            let first = group.column(0);
            let start = first
                .dictionary_page_offset()
                .unwrap_or_else(|| first.data_page_offset());
            (start, usize::try_from(group.num_rows()).unwrap_or(0))
        })
        .collect();
    // Each wanted column's place among the file's top-level columns, where it has one, and
    // where its values (as many bytes as a value takes at least) do not rule it out.
    let fields = builder.schema().fields().clone();
    let rows = groups.iter().map(|(_, rows)| *rows as u64).sum::<u64>();
    let places: Vec<Option<usize>> = wanted
        .iter()
        .map(|(name, data_type)| {
            fields
                .iter()
                .position(|f| f.name() == name)
                .filter(|&i| arrow::compute::can_cast_types(fields[i].data_type(), data_type))
                .filter(|_| rows.saturating_mul(least_width(data_type)) <= most)
        })
        .collect();
    // The batches hold the projected columns in the file's order, each once.
    let mut roots: Vec<usize> = places.iter().flatten().copied().collect();
    roots.sort_unstable();
    roots.dedup();
    let mut columns: Vec<Option<Column>> = places
        .iter()
        .map(|p| {
            p.map(|root| Column {
                groups: vec![Vec::new(); groups.len()],
                stored: stored(builder.metadata(), root),
                bytes: 0,
            })
        })
        .collect();
    if !roots.is_empty() {
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
        let mut batches = builder
            .with_projection(mask)
            .with_batch_size(size.max(1))
            .build()
            .map_err(|e| e.to_string())?;
        // The reader ends a batch where a row group ends: each batch lies in one group.
        for (group, (_, rows)) in groups.iter().enumerate() {
            let mut read = 0;
            while read < *rows {
                let batch = batches
                    .try_next()
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("fewer rows than the row groups hold")?;
                read += batch.num_rows();
                if read > *rows {
                    return Err("a batch spans two row groups".into());
                }
                for (column, (place, (_, data_type))) in
                    columns.iter_mut().zip(places.iter().zip(wanted))
                {
                    let (Some(kept), Some(place)) = (column.as_mut(), place) else {
                        continue;
                    };
                    let at = roots.binary_search(place).unwrap_or_default();
                    let array = own(batch.column(at), data_type)?;
                    let bytes = array.get_array_memory_size() as u64;
                    kept.bytes += bytes;
                    total += bytes;
                    if total > limit {
                        return Err("the file's columns are larger than the whole cache".into());
                    }
                    kept.groups[group].push(array);
                    if kept.bytes > most {
                        *column = None;
                    }
                }
                if columns.iter().all(Option::is_none) {
                    return Ok((Layout { groups }, columns));
                }
            }
        }
    }
    Ok((Layout { groups }, columns))
}

/// The compressed bytes of the top-level column `root` in each of a file's row groups.
fn stored(metadata: &ParquetMetaData, root: usize) -> Vec<u64> {
    let schema = metadata.file_metadata().schema_descr();
    let leaves: Vec<usize> = (0..schema.num_columns())
        .filter(|&leaf| schema.get_column_root_idx(leaf) == root)
        .collect();
    metadata
        .row_groups()
        .iter()
        .map(|group| {
            leaves
                .iter()
                .map(|&leaf| u64::try_from(group.column(leaf).compressed_size()).unwrap_or(0))
                .sum()
        })
        .collect()
}

/// The bytes a value of `data_type` takes in memory at least (a view 16, a fixed-width value
/// its width; 0 where it depends on the values).
pub(super) fn least_width(data_type: &DataType) -> u64 {
    match data_type {
        DataType::Utf8View | DataType::BinaryView => 16,
        other => other.primitive_width().unwrap_or(0) as u64,
    }
}

/// `array` as `data_type`, in buffers of its own (see [`decode`]).
fn own(array: &ArrayRef, data_type: &DataType) -> Result<ArrayRef, String> {
    let array = if array.data_type() == data_type {
        array.clone()
    } else {
        arrow::compute::cast(array, data_type).map_err(|e| e.to_string())?
    };
    Ok(match array.data_type() {
        DataType::Utf8View => Arc::new(array.as_string_view().gc()),
        DataType::BinaryView => Arc::new(array.as_binary_view().gc()),
        _ => array,
    })
}
