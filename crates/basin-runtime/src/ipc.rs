//! Arrow IPC files written straight into a memory map of the file a function reads.
//!
//! arrow-rs's `FileWriter` encodes each batch into a message buffer of its own, then writes
//! that buffer into the file: two copies of every byte, the second through the kernel (on a
//! small VM, 1 GiB in 0.34 s into pages already allocated). Handed-over tables are written
//! here with one copy, from the batch's buffers into the file's pages, mapped and populated
//! ahead of the writes (about 0.2 s). arrow-ipc has no writer into memory the caller owns, so
//! the record batch messages of flat columns are laid out here, by the Arrow format
//! ("Serialization and Interprocess Communication": encapsulated messages, 64-byte aligned
//! buffers, metadata V5) the way arrow-ipc lays them out; the schema message and the footer
//! come from arrow-ipc's own encoders. A table with dictionary or nested columns goes
//! through arrow-ipc's `FileWriter`, into the same map. The tests read every layout back
//! with arrow-rs; the Python tests read them with pyarrow.

use std::fs::File;
use std::io::Write;

use arrow::array::{ArrayData, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::{ArrowNativeType, DataType, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::writer::{DictionaryTracker, FileWriter, IpcDataGenerator, IpcWriteOptions};
use arrow::ipc::{
    Block, FieldNode, FooterBuilder, MessageBuilder, MessageHeader, MetadataVersion,
    RecordBatchBuilder,
};
use flatbuffers::FlatBufferBuilder;
use memmap2::{MmapMut, MmapOptions, RemapOptions};

/// Every buffer and message starts at a multiple of this (arrow-ipc's default).
const ALIGNMENT: usize = 64;
/// The file's first bytes: "ARROW1" and two bytes of padding.
const MAGIC: &[u8; 8] = b"ARROW1\0\0";
/// Pages are populated ahead of the writes this many bytes at a time, so a large pooled
/// file is not populated whole for a small table.
const POPULATE_STEP: usize = 64 << 20;
/// A file mapped from nothing starts at this size, and grows by doubling.
const FIRST_MAP: usize = 16 << 20;

fn padded(len: usize) -> usize {
    len.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// A file written through a shared memory map: grown (and remapped) as needed, its pages
/// populated ahead of the writes, cut to the bytes written at the end.
pub(crate) struct MapWriter {
    file: File,
    map: Option<MmapMut>,
    pos: usize,
    /// Bytes of the map populated so far.
    populated: usize,
}

impl MapWriter {
    /// Maps `file` (opened for reading and writing) as it is: a pooled file's pages are
    /// allocated already, and are written over from the first byte.
    pub(crate) fn new(file: File) -> std::io::Result<Self> {
        let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
        // SAFETY: the file lies in the invocation's private folder and only this writer
        // changes it until `finish`; no function runs on it yet.
        let map = match len {
            0 => None,
            len => Some(unsafe { MmapOptions::new().len(len).map_mut(&file)? }),
        };
        Ok(Self {
            file,
            map,
            pos: 0,
            populated: 0,
        })
    }

    fn capacity(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// The next `n` bytes of the file, to be written whole by the caller, who then calls
    /// `advance(n)`.
    fn next(&mut self, n: usize) -> std::io::Result<&mut [u8]> {
        let end = self.pos + n;
        if end > self.capacity() {
            let len = end.max(self.capacity() * 2).max(FIRST_MAP);
            self.file.set_len(len as u64)?;
            self.map = Some(match self.map.take() {
                // SAFETY: as in `new`; the file was grown to `len` first.
                Some(mut map) => unsafe {
                    map.remap(len, RemapOptions::new().may_move(true))?;
                    map
                },
                None => unsafe { MmapOptions::new().len(len).map_mut(&self.file)? },
            });
        }
        let map = self.map.as_mut().expect("mapped above");
        if end > self.populated {
            let to = (end.max(self.populated + POPULATE_STEP)).min(map.len());
            populate(&mut map[self.populated..to]);
            self.populated = to;
        }
        Ok(&mut map[self.pos..end])
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
    }

    /// Unmaps the file and cuts it to the bytes written; returns it and its length.
    pub(crate) fn finish(mut self) -> std::io::Result<(File, u64)> {
        self.map.take();
        let len = self.pos as u64;
        self.file.set_len(len)?;
        Ok((self.file, len))
    }
}

/// Maps `pages` in one call rather than one fault per page (Linux 5.14+; elsewhere the
/// writes fault them in). Read faults: on shared memory they map pages writable already, 16
/// at a time, where write faults map one each (1 GiB: 0.1 s against 0.25 s on a small VM).
fn populate(pages: &mut [u8]) {
    // SAFETY: madvise only changes how the pages of this live mapping are backed.
    unsafe {
        libc::madvise(
            pages.as_mut_ptr().cast(),
            pages.len(),
            libc::MADV_POPULATE_READ,
        );
    }
}

impl Write for MapWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.next(data.len())?.copy_from_slice(data);
        self.advance(data.len());
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes an Arrow IPC file into a `MapWriter`: flat columns laid out here, anything else
/// by arrow-ipc's `FileWriter`.
pub(crate) enum IpcWriter {
    Direct {
        out: MapWriter,
        schema: SchemaRef,
        blocks: Vec<Block>,
    },
    Arrow(Box<FileWriter<MapWriter>>),
}

impl IpcWriter {
    pub(crate) fn try_new(file: File, schema: &SchemaRef) -> Result<Self, ArrowError> {
        let mut out = MapWriter::new(file)?;
        if !schema.fields().iter().all(|f| flat(f.data_type())) {
            return Ok(Self::Arrow(Box::new(FileWriter::try_new(out, schema)?)));
        }
        out.write_all(MAGIC)?;
        let options = IpcWriteOptions::default();
        let message = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
            schema,
            &mut DictionaryTracker::new(false),
            &options,
        );
        arrow::ipc::writer::write_message(&mut out, message, &options)?;
        Ok(Self::Direct {
            out,
            schema: schema.clone(),
            blocks: Vec::new(),
        })
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        match self {
            Self::Direct { out, blocks, .. } => {
                blocks.push(write_batch(out, batch)?);
                Ok(())
            }
            Self::Arrow(writer) => pieces(batch).try_for_each(|piece| writer.write(&piece)),
        }
    }

    /// Writes the footer; returns the file, cut to its length, and that length.
    pub(crate) fn finish(self) -> Result<(File, u64), ArrowError> {
        let out = match self {
            Self::Direct {
                mut out,
                schema,
                blocks,
            } => {
                // The end-of-stream marker, then the footer.
                out.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])?;
                let footer = footer(&schema, &blocks);
                out.write_all(&footer)?;
                out.write_all(&(footer.len() as i32).to_le_bytes())?;
                out.write_all(&MAGIC[..6])?;
                out
            }
            Self::Arrow(mut writer) => {
                writer.finish()?;
                writer.into_inner()?
            }
        };
        Ok(out.finish()?)
    }
}

/// The most bytes of one record batch arrow-ipc's `FileWriter` writes at once: it copies each
/// batch into a buffer of its own first, and pieces this size reuse one buffer that stays in
/// the CPU's cache, where a 64 MiB batch takes fresh pages every time.
const IPC_PIECE_BYTES: usize = 4 << 20;

/// `batch` cut into slices (no copy) of about [`IPC_PIECE_BYTES`] each.
fn pieces(batch: &RecordBatch) -> impl Iterator<Item = RecordBatch> + '_ {
    let rows = batch.num_rows();
    let count = batch
        .get_array_memory_size()
        .div_ceil(IPC_PIECE_BYTES)
        .clamp(1, rows.max(1));
    let step = rows.div_ceil(count).max(1);
    (0..rows.max(1))
        .step_by(step)
        .map(move |start| batch.slice(start, step.min(rows - start)))
}

/// Whether record batches of this type are laid out here: the types whose IPC buffers are
/// their own buffers (sliced, or offsets made to start at zero).
fn flat(data_type: &DataType) -> bool {
    use DataType::*;
    data_type.is_primitive()
        || matches!(
            data_type,
            Null | Boolean
                | FixedSizeBinary(_)
                | Utf8
                | Binary
                | LargeUtf8
                | LargeBinary
                | Utf8View
                | BinaryView
        )
}

/// The footer of the file: the schema and where each record batch lies.
fn footer(schema: &Schema, blocks: &[Block]) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let dictionaries = fbb.create_vector::<Block>(&[]);
    let batches = fbb.create_vector(blocks);
    let schema = arrow::ipc::convert::IpcSchemaEncoder::new().schema_to_fb_offset(&mut fbb, schema);
    let mut footer = FooterBuilder::new(&mut fbb);
    footer.add_version(MetadataVersion::V5);
    footer.add_schema(schema);
    footer.add_dictionaries(dictionaries);
    footer.add_recordBatches(batches);
    let root = footer.finish();
    fbb.finish(root, None);
    fbb.finished_data().to_vec()
}

/// Writes one record batch message (its metadata, then its body: every buffer copied once,
/// padded with zeros) at the writer's position; returns its block for the footer.
fn write_batch(out: &mut MapWriter, batch: &RecordBatch) -> Result<Block, ArrowError> {
    let mut nodes = Vec::with_capacity(batch.num_columns());
    let mut buffers = Vec::with_capacity(batch.num_columns() * 3);
    let mut variadic = Vec::new();
    for column in batch.columns() {
        lay_out(&column.to_data(), &mut nodes, &mut buffers, &mut variadic);
    }
    let mut specs = Vec::with_capacity(buffers.len());
    let mut body = 0usize;
    for buffer in &buffers {
        specs.push(arrow::ipc::Buffer::new(body as i64, buffer.len() as i64));
        body += padded(buffer.len());
    }

    let mut fbb = FlatBufferBuilder::new();
    let nodes = fbb.create_vector(&nodes);
    let specs_fb = fbb.create_vector(&specs);
    let variadic = (!variadic.is_empty()).then(|| fbb.create_vector(&variadic));
    let mut header = RecordBatchBuilder::new(&mut fbb);
    header.add_length(batch.num_rows() as i64);
    header.add_nodes(nodes);
    header.add_buffers(specs_fb);
    if let Some(counts) = variadic {
        header.add_variadicBufferCounts(counts);
    }
    let header = header.finish();
    let mut message = MessageBuilder::new(&mut fbb);
    message.add_version(MetadataVersion::V5);
    message.add_header_type(MessageHeader::RecordBatch);
    message.add_header(header.as_union_value());
    message.add_bodyLength(body as i64);
    let root = message.finish();
    fbb.finish(root, None);
    let metadata = fbb.finished_data();

    // The continuation marker and the metadata's length, the metadata, zeros to alignment.
    let prefix = padded(8 + metadata.len());
    let start = out.pos;
    let dst = out.next(prefix + body)?;
    dst[..4].copy_from_slice(&[0xff; 4]);
    dst[4..8].copy_from_slice(&((prefix - 8) as i32).to_le_bytes());
    dst[8..8 + metadata.len()].copy_from_slice(metadata);
    dst[8 + metadata.len()..prefix].fill(0);
    let mut at = prefix;
    for buffer in &buffers {
        dst[at..at + buffer.len()].copy_from_slice(buffer.as_slice());
        dst[at + buffer.len()..at + padded(buffer.len())].fill(0);
        at += padded(buffer.len());
    }
    out.advance(prefix + body);
    Ok(Block::new(start as i64, prefix as i32, body as i64))
}

/// The field node and the IPC buffers of one flat array, as arrow-ipc writes them: the
/// validity bitmap (empty without nulls), then the type's own buffers, sliced to the rows.
fn lay_out(
    data: &ArrayData,
    nodes: &mut Vec<FieldNode>,
    buffers: &mut Vec<Buffer>,
    variadic: &mut Vec<i64>,
) {
    let (offset, len) = (data.offset(), data.len());
    if *data.data_type() == DataType::Null {
        nodes.push(FieldNode::new(len as i64, len as i64));
        return;
    }
    nodes.push(FieldNode::new(len as i64, data.null_count() as i64));
    buffers.push(match data.nulls() {
        Some(nulls) if data.null_count() > 0 => nulls.inner().sliced(),
        _ => Buffer::from(Vec::<u8>::new()),
    });
    match data.data_type() {
        DataType::Boolean => buffers.push(data.buffers()[0].bit_slice(offset, len)),
        DataType::Utf8 | DataType::Binary => byte_array::<i32>(data, buffers),
        DataType::LargeUtf8 | DataType::LargeBinary => byte_array::<i64>(data, buffers),
        DataType::Utf8View | DataType::BinaryView => {
            buffers.push(data.buffers()[0].slice_with_length(offset * 16, len * 16));
            buffers.extend(data.buffers()[1..].iter().cloned());
            variadic.push(data.buffers().len() as i64 - 1);
        }
        other => {
            let width = match other {
                DataType::FixedSizeBinary(n) => *n as usize,
                other => other.primitive_width().expect("a fixed-width type"),
            };
            buffers.push(data.buffers()[0].slice_with_length(offset * width, len * width));
        }
    }
}

/// The offsets (starting at zero) and the values of a string or binary array.
fn byte_array<O: ArrowNativeType + std::ops::Sub<Output = O>>(
    data: &ArrayData,
    buffers: &mut Vec<Buffer>,
) {
    let len = data.len();
    if len == 0 {
        buffers.push(Buffer::from_vec(vec![O::usize_as(0)]));
        buffers.push(Buffer::from(Vec::<u8>::new()));
        return;
    }
    let offsets = &data.buffer::<O>(0)[..=len];
    let (first, last) = (offsets[0], offsets[len]);
    let size = std::mem::size_of::<O>();
    buffers.push(if first == O::usize_as(0) {
        data.buffers()[0].slice_with_length(data.offset() * size, (len + 1) * size)
    } else {
        Buffer::from_iter(offsets.iter().map(|o| *o - first))
    });
    let (first, last) = (first.as_usize(), last.as_usize());
    buffers.push(data.buffers()[1].slice_with_length(first, last - first));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        Array, ArrayRef, BinaryViewArray, BooleanArray, Decimal128Array, Int32Array, Int64Array,
        LargeStringArray, ListArray, NullArray, StringArray, StringViewArray,
        TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Int32Type};
    use arrow::ipc::reader::FileReader;

    use super::*;

    /// Writes `batches` through `IpcWriter` into a file that held other bytes (as a pooled
    /// one does: `old`, 3 MiB of it), and reads them back with arrow-rs.
    fn round_trip(batches: &[RecordBatch]) -> (Vec<RecordBatch>, Vec<u8>) {
        let (read, bytes) = written_over(batches, 0xAB);
        // Every byte was written: over zeros, the file is the same.
        assert!(
            written_over(batches, 0).1 == bytes,
            "an old byte was left in the file"
        );
        (read, bytes)
    }

    fn written_over(batches: &[RecordBatch], old: u8) -> (Vec<RecordBatch>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.arrow");
        std::fs::write(&path, vec![old; 3 << 20]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut writer = IpcWriter::try_new(file, &batches[0].schema()).unwrap();
        for batch in batches {
            writer.write(batch).unwrap();
        }
        let (_, len) = writer.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, len, "cut to its length");
        let reader = FileReader::try_new(std::fs::File::open(&path).unwrap(), None).unwrap();
        let read = reader.collect::<Result<Vec<_>, _>>().unwrap();
        (read, bytes)
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    #[test]
    fn flat_columns_read_back_equal_sliced_or_not_with_nulls_or_not() {
        let whole = batch(vec![
            ("i", Arc::new(Int64Array::from_iter(0..1000)) as ArrayRef),
            (
                "n",
                Arc::new(Int32Array::from_iter(
                    (0..1000).map(|i| (i % 3 != 0).then_some(i)),
                )),
            ),
            (
                "b",
                Arc::new(BooleanArray::from_iter(
                    (0..1000).map(|i| (i % 5 != 0).then_some(i % 2 == 0)),
                )),
            ),
            (
                "s",
                Arc::new(StringArray::from_iter(
                    (0..1000).map(|i| (i % 7 != 0).then(|| format!("row {i}"))),
                )),
            ),
            (
                "l",
                Arc::new(LargeStringArray::from_iter_values(
                    (0..1000).map(|i| "x".repeat(i % 4)),
                )),
            ),
            (
                "v",
                Arc::new(StringViewArray::from_iter((0..1000).map(|i| {
                    (i % 11 != 0).then(|| format!("a longer string, row {i}"))
                }))),
            ),
            (
                "bv",
                Arc::new(BinaryViewArray::from_iter_values(
                    (0..1000).map(|i| vec![i as u8; i % 20]),
                )),
            ),
            (
                "d",
                Arc::new(
                    Decimal128Array::from_iter(
                        (0..1000).map(|i| (i % 2 == 0).then_some(i as i128 * 100)),
                    )
                    .with_precision_and_scale(15, 2)
                    .unwrap(),
                ),
            ),
            (
                "t",
                Arc::new(TimestampMicrosecondArray::from_iter_values(0..1000)),
            ),
            ("z", Arc::new(NullArray::new(1000))),
        ]);
        // Slices at offsets that are not multiples of 8 (bitmaps re-aligned) and whose
        // strings do not start at offset zero.
        let pieces = vec![
            whole.slice(0, 13),
            whole.slice(13, 500),
            whole.slice(513, 487),
            whole.slice(1000, 0),
        ];
        let (read, bytes) = round_trip(&pieces);
        assert_eq!(read, pieces);
        assert!(bytes.starts_with(MAGIC) && bytes.ends_with(b"ARROW1"));
    }

    #[test]
    fn a_file_grows_past_its_first_map_and_nested_columns_go_through_arrow_ipc() {
        let big = batch(vec![(
            "i",
            Arc::new(Int64Array::from_iter_values(0..(3 << 20))) as ArrayRef,
        )]);
        let (read, _) = round_trip(&[big.clone(), big.clone()]);
        assert_eq!(read, vec![big.clone(), big]);

        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(
            (0..100).map(|i| (i % 3 != 0).then(|| vec![Some(i), None])),
        );
        let nested = batch(vec![("list", Arc::new(list) as ArrayRef)]);
        let (read, _) = round_trip(std::slice::from_ref(&nested));
        assert_eq!(read, vec![nested]);
    }

    #[test]
    fn a_new_empty_file_is_mapped_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.arrow");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let one = batch(vec![(
            "s",
            Arc::new(StringArray::from_iter_values(["a", "bc", ""])) as ArrayRef,
        )]);
        let mut writer = IpcWriter::try_new(file, &one.schema()).unwrap();
        writer.write(&one).unwrap();
        let (_, len) = writer.finish().unwrap();
        assert!(len < 1024, "cut to {len} bytes");
        let reader = FileReader::try_new(std::fs::File::open(&path).unwrap(), None).unwrap();
        assert_eq!(reader.collect::<Result<Vec<_>, _>>().unwrap(), vec![one]);
    }

    #[test]
    fn only_flat_types_are_laid_out_here() {
        assert!(flat(&DataType::Utf8View) && flat(&DataType::Decimal128(15, 2)));
        let list = DataType::List(Arc::new(Field::new("x", DataType::Int32, true)));
        assert!(!flat(&list));
        assert!(!flat(&DataType::Dictionary(
            Box::new(DataType::Int32),
            Box::new(DataType::Utf8)
        )));
    }

    fn longs(rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap()
    }

    #[test]
    fn a_large_batch_is_written_in_pieces_of_about_four_mebibytes_in_order() {
        let batch = longs(2_000_000); // 16 MB
        let cut: Vec<RecordBatch> = pieces(&batch).collect();
        assert_eq!(cut.len(), 4);
        let mut next = 0;
        for piece in &cut {
            assert!(
                piece.num_rows() * 8 <= IPC_PIECE_BYTES,
                "{}",
                piece.num_rows()
            );
            let values = piece
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            assert_eq!(values.value(0), next);
            next += values.len() as i64;
        }
        assert_eq!(next, 2_000_000);
    }

    #[test]
    fn small_and_empty_batches_stay_whole() {
        assert_eq!(
            pieces(&longs(1000))
                .map(|b| b.num_rows())
                .collect::<Vec<_>>(),
            [1000]
        );
        assert_eq!(
            pieces(&longs(0)).map(|b| b.num_rows()).collect::<Vec<_>>(),
            [0]
        );
    }
}
