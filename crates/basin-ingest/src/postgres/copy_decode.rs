//! A decoder of Postgres's binary COPY format straight into Arrow builders.
//!
//! Written by hand: no crate decodes binary COPY into Arrow without pulling another arrow
//! (connectorx) or row-at-a-time values (tokio-postgres's `BinaryCopyOutStream`). The format
//! (postgresql.org/docs/current/sql-copy.html, "Binary Format"): an 11-byte signature, flags
//! and a header extension; then per row an i16 field count (-1 ends the data) and per field
//! an i32 length (-1 is NULL) and the value in its type's `send` encoding, big-endian.
//! Chunks may split a row anywhere: the unparsed tail waits for the next chunk.

use std::sync::Arc;

use arrow::array::ListArray;
use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    LargeBinaryBuilder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, FieldRef, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::numeric::numeric;
use super::types::{Decode, Kind};

pub(crate) const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Days and microseconds from the Unix epoch to Postgres's (2000-01-01).
const PG_EPOCH_DAYS: i32 = 10_957;
pub(crate) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A value that cannot be decoded or stored: the column's position and why.
#[derive(Debug)]
pub(crate) struct DecodeError {
    pub column: Option<usize>,
    pub message: String,
}

fn bad(column: usize, message: impl Into<String>) -> DecodeError {
    DecodeError {
        column: Some(column),
        message: message.into(),
    }
}

enum Builder {
    Bool(BooleanBuilder),
    Int16(Int32Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Numeric(Decimal128Builder, i8),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Bytea(LargeBinaryBuilder),
    /// A one-dimensional array: its elements in `values`, where each row's start.
    List {
        field: FieldRef,
        values: Box<Builder>,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
    },
}

impl Builder {
    fn new(decode: Decode, data_type: &DataType, capacity: usize) -> Self {
        if decode.list {
            let field = match data_type {
                DataType::List(field) => field.clone(),
                // Not from a table's schema (always a list there): the batch will not form.
                other => Arc::new(arrow::datatypes::Field::new("element", other.clone(), true)),
            };
            let values = Builder::scalar(decode.kind, field.data_type(), capacity);
            return Builder::List {
                field,
                values: Box::new(values),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(capacity),
            };
        }
        Builder::scalar(decode.kind, data_type, capacity)
    }

    fn scalar(kind: Kind, data_type: &DataType, capacity: usize) -> Self {
        match kind {
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
            Kind::Int16 => Builder::Int16(Int32Builder::with_capacity(capacity)),
            Kind::Int32 => Builder::Int32(Int32Builder::with_capacity(capacity)),
            Kind::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
            Kind::Float32 => Builder::Float32(Float32Builder::with_capacity(capacity)),
            Kind::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
            Kind::Text => Builder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
            Kind::Jsonb => Builder::Jsonb(StringBuilder::with_capacity(capacity, capacity * 32)),
            Kind::Numeric { scale, .. } => Builder::Numeric(
                Decimal128Builder::with_capacity(capacity).with_data_type(data_type.clone()),
                scale,
            ),
            Kind::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
            Kind::Time => Builder::Time(Time64MicrosecondBuilder::with_capacity(capacity)),
            Kind::Timestamp | Kind::Timestamptz => Builder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity)
                    .with_data_type(data_type.clone()),
            ),
            Kind::Uuid => Builder::Uuid(FixedSizeBinaryBuilder::with_capacity(capacity, 16)),
            Kind::Bytea => Builder::Bytea(LargeBinaryBuilder::with_capacity(capacity, capacity)),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::Int16(b) | Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Text(b) | Builder::Jsonb(b) => b.append_null(),
            Builder::Numeric(b, _) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Uuid(b) => b.append_null(),
            Builder::Bytea(b) => b.append_null(),
            Builder::List { offsets, nulls, .. } => {
                offsets.push(offsets.last().copied().unwrap_or(0));
                nulls.append_null();
            }
        }
    }

    /// Appends one non-NULL value in its `send` encoding.
    fn append(&mut self, v: &[u8]) -> Result<(), String> {
        let wrong = |want: usize| format!("expected {want} bytes, got {}", v.len());
        match self {
            Builder::Bool(b) => match v {
                [x] => b.append_value(*x != 0),
                _ => return Err(wrong(1)),
            },
            Builder::Int16(b) => {
                let x: [u8; 2] = v.try_into().map_err(|_| wrong(2))?;
                b.append_value(i32::from(i16::from_be_bytes(x)));
            }
            Builder::Int32(b) => {
                b.append_value(i32::from_be_bytes(v.try_into().map_err(|_| wrong(4))?))
            }
            Builder::Int64(b) => {
                b.append_value(i64::from_be_bytes(v.try_into().map_err(|_| wrong(8))?))
            }
            Builder::Float32(b) => {
                b.append_value(f32::from_be_bytes(v.try_into().map_err(|_| wrong(4))?))
            }
            Builder::Float64(b) => {
                b.append_value(f64::from_be_bytes(v.try_into().map_err(|_| wrong(8))?))
            }
            Builder::Text(b) => b.append_value(utf8(v)?),
            Builder::Jsonb(b) => match v.split_first() {
                Some((1, json)) => b.append_value(utf8(json)?),
                _ => return Err("unknown jsonb version".into()),
            },
            Builder::Numeric(b, scale) => b.append_value(numeric(v, *scale)?),
            Builder::Date(b) => {
                let days = i32::from_be_bytes(v.try_into().map_err(|_| wrong(4))?);
                let days = days
                    .checked_add(PG_EPOCH_DAYS)
                    .filter(|_| days != i32::MAX && days != i32::MIN)
                    .ok_or("the date is infinity, which Iceberg cannot store")?;
                b.append_value(days);
            }
            Builder::Time(b) => {
                b.append_value(i64::from_be_bytes(v.try_into().map_err(|_| wrong(8))?))
            }
            Builder::Timestamp(b) => {
                let micros = i64::from_be_bytes(v.try_into().map_err(|_| wrong(8))?);
                let micros = micros
                    .checked_add(PG_EPOCH_MICROS)
                    .filter(|_| micros != i64::MAX && micros != i64::MIN)
                    .ok_or("the timestamp is infinity, which Iceberg cannot store")?;
                b.append_value(micros);
            }
            Builder::Uuid(b) => b.append_value(v).map_err(|_| wrong(16))?,
            Builder::Bytea(b) => b.append_value(v),
            Builder::List {
                values,
                offsets,
                nulls,
                ..
            } => {
                let count = array(v, values)?;
                let end = offsets.last().copied().unwrap_or(0) + count;
                offsets.push(end);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int16(b) | Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Text(b) | Builder::Jsonb(b) => Arc::new(b.finish()),
            Builder::Numeric(b, _) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Uuid(b) => Arc::new(b.finish()),
            Builder::Bytea(b) => Arc::new(b.finish()),
            Builder::List {
                field,
                values,
                offsets,
                nulls,
            } => {
                let offsets =
                    OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
                Arc::new(ListArray::new(
                    field.clone(),
                    offsets,
                    values.finish(),
                    nulls.finish(),
                ))
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Builder::Bool(b) => b.len(),
            Builder::Int16(b) | Builder::Int32(b) => b.len(),
            Builder::Int64(b) => b.len(),
            Builder::Float32(b) => b.len(),
            Builder::Float64(b) => b.len(),
            Builder::Text(b) | Builder::Jsonb(b) => b.len(),
            Builder::Numeric(b, _) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::Time(b) => b.len(),
            Builder::Timestamp(b) => b.len(),
            Builder::Uuid(b) => b.len(),
            Builder::Bytea(b) => b.len(),
            Builder::List { offsets, .. } => offsets.len() - 1,
        }
    }
}

/// An array's `send` encoding (dimensions, a has-nulls flag, the element type, each
/// dimension's length and lower bound, then the elements as COPY fields) appended to
/// `values`; returns how many elements it had.
fn array(v: &[u8], values: &mut Builder) -> Result<i32, String> {
    let truncated = || "a truncated array".to_string();
    let int = |at: usize| -> Result<i32, String> {
        v.get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(truncated)
    };
    let dimensions = int(0)?;
    if dimensions == 0 {
        return Ok(0);
    }
    if dimensions != 1 {
        return Err(format!(
            "a {dimensions}-dimensional array: only one-dimensional arrays load as lists"
        ));
    }
    let count = int(12)?;
    let mut at = 20;
    for _ in 0..count {
        let len = int(at)?;
        at += 4;
        if len < 0 {
            values.append_null();
        } else {
            let element = v.get(at..at + len as usize).ok_or_else(truncated)?;
            values.append(element)?;
            at += len as usize;
        }
    }
    Ok(count)
}

fn utf8(v: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(v).map_err(|e| format!("the text is not UTF-8 ({e})"))
}

/// Decodes one COPY stream (a table, or one ctid range of it) into batches of `batch_rows`.
pub(crate) struct CopyDecoder {
    schema: SchemaRef,
    kinds: Vec<Decode>,
    builders: Vec<Builder>,
    batch_rows: usize,
    /// Bytes of a row (or the header) that arrived without their end.
    pending: Vec<u8>,
    header_read: bool,
    ended: bool,
}

impl CopyDecoder {
    /// `schema`'s fields in the COPY's column order, each decoded as its `kinds` entry.
    pub(crate) fn new(schema: SchemaRef, kinds: Vec<Decode>, batch_rows: usize) -> Self {
        let builders = Self::builders(&schema, &kinds, batch_rows);
        Self {
            schema,
            kinds,
            builders,
            batch_rows,
            pending: Vec::new(),
            header_read: false,
            ended: false,
        }
    }

    fn builders(schema: &SchemaRef, kinds: &[Decode], capacity: usize) -> Vec<Builder> {
        kinds
            .iter()
            .zip(schema.fields())
            .map(|(kind, field)| Builder::new(*kind, field.data_type(), capacity))
            .collect()
    }

    fn rows(&self) -> usize {
        self.builders.first().map_or(0, Builder::len)
    }

    /// Decodes what `chunk` completes; returns a batch whenever `batch_rows` rows are ready.
    pub(crate) fn push(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), DecodeError> {
        if self.pending.is_empty() {
            let used = self.parse(chunk, out)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut data = std::mem::take(&mut self.pending);
            data.extend_from_slice(chunk);
            let used = self.parse(&data, out)?;
            data.drain(..used);
            self.pending = data;
        }
        Ok(())
    }

    /// The rows decoded since the last batch; fails if the stream stopped inside a row.
    pub(crate) fn finish(&mut self) -> Result<Option<RecordBatch>, DecodeError> {
        if !self.pending.is_empty() || !self.header_read {
            return Err(DecodeError {
                column: None,
                message: "the COPY data ended inside a row".into(),
            });
        }
        if self.rows() == 0 {
            return Ok(None);
        }
        self.batch().map(Some)
    }

    fn batch(&mut self) -> Result<RecordBatch, DecodeError> {
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        self.builders = Self::builders(&self.schema, &self.kinds, self.batch_rows);
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| DecodeError {
            column: None,
            message: format!("decoded columns do not form a batch: {e}"),
        })
    }

    /// Decodes every complete row at the start of `data`; returns how many bytes it used.
    fn parse(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<usize, DecodeError> {
        let mut at = 0;
        if !self.header_read {
            // Signature, flags, extension length, extension.
            if data.len() < 19 {
                return Ok(0);
            }
            if &data[..11] != SIGNATURE {
                return Err(DecodeError {
                    column: None,
                    message: "the COPY data does not start with the binary signature".into(),
                });
            }
            let extension = u32::from_be_bytes([data[15], data[16], data[17], data[18]]) as usize;
            if data.len() < 19 + extension {
                return Ok(0);
            }
            at = 19 + extension;
            self.header_read = true;
        }
        let width = self.builders.len();
        while !self.ended && data.len() >= at + 2 {
            let count = i16::from_be_bytes([data[at], data[at + 1]]);
            if count == -1 {
                self.ended = true;
                at += 2;
                break;
            }
            if count as usize != width {
                return Err(DecodeError {
                    column: None,
                    message: format!("a row has {count} fields, expected {width}"),
                });
            }
            // The whole row must be here before any builder takes a value.
            let mut end = at + 2;
            let mut complete = true;
            for _ in 0..width {
                let Some(len) = data.get(end..end + 4) else {
                    complete = false;
                    break;
                };
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                end += 4 + len.max(0) as usize;
                if end > data.len() {
                    complete = false;
                    break;
                }
            }
            if !complete {
                break;
            }
            let mut field = at + 2;
            for (column, builder) in self.builders.iter_mut().enumerate() {
                let b = &data[field..field + 4];
                let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                field += 4;
                if len < 0 {
                    builder.append_null();
                } else {
                    let value = &data[field..field + len as usize];
                    builder.append(value).map_err(|e| bad(column, e))?;
                    field += len as usize;
                }
            }
            at = end;
            if self.rows() >= self.batch_rows {
                out.push(self.batch()?);
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    use super::*;

    fn scalar(kind: Kind) -> Decode {
        Decode { kind, list: false }
    }

    fn copy_bytes(rows: &[(Option<i32>, Option<&str>)]) -> Vec<u8> {
        let mut v = SIGNATURE.to_vec();
        v.extend(0u32.to_be_bytes());
        v.extend(0u32.to_be_bytes());
        for (n, s) in rows {
            v.extend(2i16.to_be_bytes());
            match n {
                Some(n) => {
                    v.extend(4i32.to_be_bytes());
                    v.extend(n.to_be_bytes());
                }
                None => v.extend((-1i32).to_be_bytes()),
            }
            match s {
                Some(s) => {
                    v.extend((s.len() as i32).to_be_bytes());
                    v.extend(s.as_bytes());
                }
                None => v.extend((-1i32).to_be_bytes()),
            }
        }
        v.extend((-1i16).to_be_bytes());
        v
    }

    #[test]
    fn rows_split_across_chunks_anywhere_decode_the_same() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let rows = [(Some(1), Some("héllo")), (None, Some("")), (Some(-7), None)];
        let data = copy_bytes(&rows);
        for chunk in [1, 2, 3, 7, data.len()] {
            let mut decoder = CopyDecoder::new(
                schema.clone(),
                vec![scalar(Kind::Int32), scalar(Kind::Text)],
                2,
            );
            let mut batches = Vec::new();
            for part in data.chunks(chunk) {
                decoder.push(part, &mut batches).unwrap();
            }
            batches.extend(decoder.finish().unwrap());
            assert_eq!(
                batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
                [2, 1]
            );
            let numbers: Vec<Option<i32>> = batches
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_primitive::<Int32Type>()
                        .iter()
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(numbers, [Some(1), None, Some(-7)]);
            let text = batches[0].column(1).as_string::<i32>();
            assert_eq!((text.value(0), text.value(1)), ("héllo", ""));
            assert!(batches[1].column(1).is_null(0));
        }
    }

    #[test]
    fn a_stream_cut_inside_a_row_is_an_error() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let data = copy_bytes(&[(Some(1), Some("abc"))]);
        let mut decoder =
            CopyDecoder::new(schema, vec![scalar(Kind::Int32), scalar(Kind::Text)], 10);
        decoder
            .push(&data[..data.len() - 4], &mut Vec::new())
            .unwrap();
        assert!(decoder.finish().is_err());
    }
}
