//! Arrow IPC files written with one copy of each buffer.
//!
//! arrow-rs's `FileWriter` encodes each batch into a message buffer of its own, then writes
//! that buffer into the file: two copies of every byte. Handed-over tables are written here
//! with one: each record batch message goes to the file in one vectored write, from the
//! batch's own buffers (on a small VM, a 1 GiB input in 0.27-0.34 s instead of 0.42-0.54 s).
//! Through write(2) rather than a memory map: tmpfs allocates new pages for a write twice
//! as fast as for page faults (1 GiB: 0.55 s against 1.1 s), and a handed-over file is often
//! new. arrow-ipc has no writer that takes the batch's buffers as they are, so the record
//! batch messages of flat columns are laid out here, by the Arrow format ("Serialization and
//! Interprocess Communication": encapsulated messages, 64-byte aligned buffers, metadata V5)
//! the way arrow-ipc lays them out; the schema message and the footer come from arrow-ipc's
//! own encoders. A table with dictionary or nested columns goes through arrow-ipc's
//! `FileWriter`. The tests read every layout back with arrow-rs; the Python tests read them
//! with pyarrow.

use std::fs::File;
use std::io::{BufWriter, IoSlice, Write};

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

/// Every buffer and message starts at a multiple of this (arrow-ipc's default).
const ALIGNMENT: usize = 64;
/// The file's first bytes: "ARROW1" and two bytes of padding.
const MAGIC: &[u8; 8] = b"ARROW1\0\0";
/// Zeros for padding.
const ZEROS: [u8; ALIGNMENT] = [0; ALIGNMENT];

fn padded(len: usize) -> usize {
    len.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// A file written from its first byte (a pooled file is written over, then cut to length).
pub(crate) struct Out {
    file: File,
    pos: u64,
}

impl Out {
    fn new(file: File) -> Self {
        Self { file, pos: 0 }
    }

    fn write_slices(&mut self, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
        while !slices.is_empty() {
            let n = self.file.write_vectored(slices)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.pos += n as u64;
            IoSlice::advance_slices(&mut slices, n);
        }
        Ok(())
    }

    /// Cuts the file to the bytes written; returns it and its length.
    fn finish(self) -> std::io::Result<(File, u64)> {
        self.file.set_len(self.pos)?;
        Ok((self.file, self.pos))
    }
}

impl Write for Out {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(data)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes an Arrow IPC file: flat columns laid out here, anything else by arrow-ipc's
/// `FileWriter`.
pub(crate) enum IpcWriter {
    Direct {
        out: Out,
        schema: SchemaRef,
        blocks: Vec<Block>,
    },
    Arrow(Box<FileWriter<BufWriter<Out>>>),
}

impl IpcWriter {
    pub(crate) fn try_new(file: File, schema: &SchemaRef) -> Result<Self, ArrowError> {
        let mut out = Out::new(file);
        if !schema.fields().iter().all(|f| flat(f.data_type())) {
            let buffered = BufWriter::with_capacity(1 << 20, out);
            return Ok(Self::Arrow(Box::new(FileWriter::try_new(
                buffered, schema,
            )?)));
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
                writer
                    .into_inner()?
                    .into_inner()
                    .map_err(|e| e.into_error())?
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
/// padded with zeros) at the file's position; returns its block for the footer.
fn write_batch(out: &mut Out, batch: &RecordBatch) -> Result<Block, ArrowError> {
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

    // The continuation marker and the metadata's length, the metadata, zeros to alignment;
    // then the body, each buffer followed by zeros to alignment.
    let prefix = padded(8 + metadata.len());
    let mut head = Vec::with_capacity(prefix);
    head.extend_from_slice(&[0xff; 4]);
    head.extend_from_slice(&((prefix - 8) as i32).to_le_bytes());
    head.extend_from_slice(metadata);
    head.resize(prefix, 0);
    let mut slices = Vec::with_capacity(1 + 2 * buffers.len());
    slices.push(IoSlice::new(&head));
    for buffer in &buffers {
        slices.push(IoSlice::new(buffer.as_slice()));
        slices.push(IoSlice::new(&ZEROS[..padded(buffer.len()) - buffer.len()]));
    }
    let start = out.pos;
    out.write_slices(&mut slices)?;
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
    fn a_file_grows_past_its_old_length_and_nested_columns_go_through_arrow_ipc() {
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
    fn a_new_empty_file_is_written_and_cut_to_length() {
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
