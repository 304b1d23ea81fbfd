//! Arrow IPC files on disk: written whole, and read back (the tables functions return, the
//! inputs they hand back by reference) either mapped, leased to the handoff pool until no
//! batch maps them, or read into memory. Files a function wrote are untrusted: opened without
//! following a link, checked to be regular files, and decoded with every block checked to
//! lie inside the file.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::writer::FileWriter;
use basin_core::{Error, Result};

use crate::pool::Pool;
use crate::scratch::io;

pub(crate) fn arrow_error(what: String) -> impl FnOnce(arrow::error::ArrowError) -> Error {
    move |e| Error::internal(format!("{what}: {e}"))
}

/// Writes `batches` as an Arrow IPC file at `path`.
pub fn write_ipc_file(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let what = format!("writing {}", path.display());
    let file = File::create(path).map_err(io(what.clone()))?;
    write_ipc(
        BufWriter::with_capacity(1 << 20, file),
        schema,
        batches,
        &what,
    )
}

/// Writes `batches` as an Arrow IPC file into `out`; `what` says what it is in errors.
pub fn write_ipc(
    out: impl std::io::Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    what: &str,
) -> Result<()> {
    let mut writer = FileWriter::try_new(out, schema).map_err(arrow_error(what.to_string()))?;
    for batch in batches {
        writer.write(batch).map_err(arrow_error(what.to_string()))?;
    }
    writer.finish().map_err(arrow_error(what.to_string()))
}

/// Reads an Arrow IPC file without copying it: the batches' buffers point into a shared
/// memory map of the file (which stays valid after the file is removed). Only for files
/// nothing writes to any more.
pub fn read_ipc_file(path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    read_output(path, true, None).map(|(schema, batches, _)| (schema, batches))
}

/// Where a function's output file mapped as its result stands. It goes back to the pool, as
/// a used file (only Basin writes into those, or the refill zero-fills them), once it is
/// neither mapped nor in its invocation's folder, so the pages of the tables functions return
/// are written again rather than freed and allocated anew.
#[derive(Debug, Default)]
pub(crate) struct Lease {
    /// No batch maps the file any more.
    pub(crate) unmapped: bool,
    /// The folder is gone: the file waits in the pool's folder under this name.
    pub(crate) waiting: Option<PathBuf>,
}

/// A mapped output's pages, shared by the batches read from it.
struct Mapped {
    map: Option<memmap2::Mmap>,
    lease: Option<(Arc<Pool>, Arc<Mutex<Lease>>)>,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        self.map.take();
        if let Some((pool, lease)) = self.lease.take() {
            let mut lease = lease.lock().expect("lease");
            match lease.waiting.take() {
                Some(path) => give_back_or_remove(&pool, &path),
                None => lease.unmapped = true,
            }
        }
    }
}

pub(crate) fn give_back_or_remove(pool: &Arc<Pool>, path: &Path) {
    if !pool.give_back(path) {
        let _ = std::fs::remove_file(path);
    }
}

/// The bytes of a file a function wrote (or could have): opened once, without following a link, checked
/// to be a regular file on the opened handle (so it cannot be swapped between the check and
/// the read), then mapped (`map`) or read into memory. A mapped file goes back to `lease`'s
/// pool once unmapped and out of its folder.
pub(crate) fn file_bytes(
    path: &Path,
    map: bool,
    lease: Option<(&Arc<Pool>, Arc<Mutex<Lease>>)>,
    what: &dyn Fn() -> String,
) -> Result<Buffer> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let not_plain = || {
        Error::invalid(format!("{} is not a regular file", what()))
            .with_hint("write the output table as an Arrow IPC file at output.path")
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO must not block the open either.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => not_plain(),
            _ => Error::io_with(what(), e),
        })?;
    let meta = file.metadata().map_err(io(what()))?;
    if !meta.file_type().is_file() {
        return Err(not_plain());
    }
    Ok(if map {
        // SAFETY: the file is in the invocation's private folder and every process of the
        // invocation has ended; nothing changes it while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io(what()))?;
        let lease = lease.map(|(pool, lease)| (pool.clone(), lease));
        Buffer::from(bytes::Bytes::from_owner(Mapped {
            map: Some(map),
            lease,
        }))
    } else {
        let mut data = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut data).map_err(io(what()))?;
        Buffer::from_vec(data)
    })
}

/// Reads an Arrow IPC file a function wrote (`file_bytes`) and decodes it. Returns the file's
/// length too.
pub(crate) fn read_output(
    path: &Path,
    map: bool,
    lease: Option<(&Arc<Pool>, Arc<Mutex<Lease>>)>,
) -> Result<(SchemaRef, Vec<RecordBatch>, u64)> {
    let what = || format!("the function's output {}", path.display());
    let buffer = file_bytes(path, map, lease, &what)?;
    let len = buffer.len() as u64;
    let (schema, batches) = decode(&buffer, &what)?;
    Ok((schema, batches, len))
}

/// The schema and batches of the Arrow IPC file in `buffer`; the batches' arrays point into
/// it. The file is untrusted: a block outside it is an error, not a panic.
pub(crate) fn decode(
    buffer: &Buffer,
    what: &dyn Fn() -> String,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let len = buffer.len();
    if len < 10 {
        return Err(Error::invalid(format!(
            "{} is not an Arrow IPC file",
            what()
        )));
    }
    let trailer: [u8; 10] = buffer[len - 10..].try_into().expect("10 bytes");
    let footer_len = read_footer_length(trailer).map_err(arrow_error(what()))?;
    if footer_len > len - 10 {
        return Err(Error::invalid(format!(
            "{}: its footer is longer than the file",
            what()
        )));
    }
    let footer = arrow::ipc::root_as_footer(&buffer[len - 10 - footer_len..len - 10])
        .map_err(|e| Error::invalid(format!("{}: bad footer: {e}", what())))?;
    let schema = Arc::new(arrow::ipc::convert::fb_to_schema(
        footer
            .schema()
            .ok_or_else(|| Error::invalid(format!("{} has no schema", what())))?,
    ));
    let mut decoder = FileDecoder::new(schema.clone(), footer.version());
    let slice = |block: &arrow::ipc::Block| -> Result<Buffer> {
        let offset = usize::try_from(block.offset()).ok();
        let length = usize::try_from(block.bodyLength())
            .ok()
            .zip(usize::try_from(block.metaDataLength()).ok())
            .and_then(|(b, m)| b.checked_add(m));
        match (offset, length) {
            (Some(o), Some(l)) if o.checked_add(l).is_some_and(|end| end <= len) => {
                Ok(buffer.slice_with_length(o, l))
            }
            _ => Err(Error::invalid(format!(
                "{}: a block lies outside the file",
                what()
            ))),
        }
    };
    for block in footer.dictionaries().iter().flatten() {
        decoder
            .read_dictionary(block, &slice(block)?)
            .map_err(arrow_error(what()))?;
    }
    let mut batches = Vec::new();
    for block in footer.recordBatches().iter().flatten() {
        if let Some(batch) = decoder
            .read_record_batch(block, &slice(block)?)
            .map_err(arrow_error(what()))?
        {
            batches.push(batch);
        }
    }
    Ok((schema, batches))
}
