//! Streams every source file into data files: one reader thread parses, several Parquet
//! encoders (one per core, each writing its own files) take its batches in turn.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use basin_core::{Error, Result};
use basin_table::TableWriter;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::input_files::InputFile;
use crate::read::{self, CsvOptions};
use crate::schema;

/// Told how many bytes of how many have been read, as the import goes.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// The rows written and the data files holding them.
pub(crate) struct Written {
    pub rows: u64,
    pub files: Vec<DataFile>,
}

pub(crate) async fn write_all(
    table: &Table,
    files: Vec<Arc<InputFile>>,
    probes: Vec<Vec<(String, DataType)>>,
    csv: CsvOptions,
    target: SchemaRef,
    progress: Option<Progress>,
) -> Result<Written> {
    // A partitioned table keeps one encoder, so each partition gets one file per import.
    let encoders = if table.metadata().default_partition_spec().is_unpartitioned() {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    } else {
        1
    };
    let mut senders = Vec::with_capacity(encoders);
    let mut writers = JoinSet::new();
    for _ in 0..encoders {
        let (tx, mut rx) = mpsc::channel::<RecordBatch>(2);
        let mut writer = TableWriter::new(table).await?;
        writers.spawn(async move {
            while let Some(batch) = rx.recv().await {
                writer.write(batch).await?;
            }
            let rows = writer.rows();
            Ok::<_, Error>(Written {
                rows,
                files: writer.close().await?,
            })
        });
        senders.push(tx);
    }

    let reader = tokio::task::spawn_blocking(move || -> Result<()> {
        let total: u64 = files.iter().map(|f| f.size).sum();
        let (mut done, mut next) = (0u64, 0usize);
        for (file, probe) in files.iter().zip(&probes) {
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let reading = schema::reading_schema(probe, &target);
            read::read(file, &csv, reading, counter.clone(), |batch| {
                let batch = schema::conform(&batch, &target, &file.display)?;
                // A closed channel means that encoder failed; its own error is reported.
                senders[next % senders.len()]
                    .blocking_send(batch)
                    .map_err(|_| Error::internal("a Parquet encoder stopped"))?;
                next += 1;
                if let Some(p) = &progress {
                    p(done + counter.load(Ordering::Relaxed), total);
                }
                Ok(())
            })?;
            done += file.size;
            if let Some(p) = &progress {
                p(done, total);
            }
        }
        Ok(())
    });
    let read = reader
        .await
        .map_err(|e| Error::internal(format!("the import's reader failed: {e}")))?;

    let mut written = Written {
        rows: 0,
        files: Vec::new(),
    };
    let mut failure = None;
    while let Some(joined) = writers.join_next().await {
        match joined.map_err(|e| Error::internal(format!("a Parquet encoder failed: {e}")))? {
            Ok(part) => {
                written.rows += part.rows;
                written.files.extend(part.files);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    match (failure, read) {
        (Some(e), _) | (None, Err(e)) => Err(e),
        (None, Ok(())) => Ok(written),
    }
}
