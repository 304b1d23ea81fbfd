//! A returned table's batches that lie in the function's inputs. A column the function
//! passed through, selected, renamed or sliced is handed back as offsets into the input file
//! Basin wrote (docs/protocol.md, "Tables by reference") and read there, instead of the
//! worker copying it into the output file for Basin to read again. What a reply names must
//! lie inside the invocation's own inputs and form valid arrays of the output's types (every
//! array is validated in full, as any untrusted Arrow data), or the table is refused.

use arrow::array::{ArrayData, ArrayRef, RecordBatch, RecordBatchOptions, make_array};
use arrow::buffer::Buffer;
use arrow::datatypes::{Field, SchemaRef};
use basin_core::{Error, Result};

use crate::protocol::{ColumnRef, Piece};
use crate::workspace::Workspace;

/// The returned table's batches in the reply's order: the next of the file's batches for
/// the file's next `count` batches for each `Piece::File`, arrays over the inputs' bytes (mapped when `map`) for the others.
pub(crate) fn assemble(
    ws: &Workspace,
    function: &str,
    schema: &SchemaRef,
    written: Vec<RecordBatch>,
    pieces: Vec<Piece>,
    map: bool,
) -> Result<Vec<RecordBatch>> {
    let refused = |what: String| {
        Error::invalid(format!(
            "function `{function}` returned a table Basin cannot read: {what}"
        ))
        .with_hint(
            "return the table as computed; batches handed back by reference must lie in the \
             function's own inputs (docs/protocol.md)",
        )
    };
    let mut written = written.into_iter();
    let mut batches = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let i = batches.len();
        let (rows, columns) = match piece {
            Piece::File { count } => {
                for i in i..i.saturating_add(count) {
                    let batch = written.next().ok_or_else(|| {
                        refused(format!("its batch {i} is in the file, which has no more"))
                    })?;
                    batches.push(batch);
                }
                continue;
            }
            Piece::Input { rows, columns } => (rows, columns),
        };
        if columns.len() != schema.fields().len() {
            return Err(refused(format!(
                "its batch {i} has {} columns; the schema has {}",
                columns.len(),
                schema.fields().len()
            )));
        }
        let mut arrays = Vec::with_capacity(columns.len());
        for (field, c) in schema.fields().iter().zip(&columns) {
            let bytes = ws
                .input_bytes(&c.input, map)
                .map_err(|e| refused(format!("its batch {i} names input `{}`: {e}", c.input)))?;
            let array = column(field, rows, c, &bytes)
                .map_err(|e| refused(format!("batch {i}, column `{}`: {e}", field.name())))?;
            arrays.push(array);
        }
        let bytes = columns.iter().flat_map(|c| &c.buffers).flatten();
        ws.add_bytes_by_reference(bytes.map(|(_, len)| *len as u64).sum());
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(schema.clone(), arrays, &options)
            .map_err(|e| refused(format!("batch {i}: {e}")))?;
        batches.push(batch);
    }
    if written.next().is_some() {
        return Err(refused(
            "its file holds more batches than its reply lists".into(),
        ));
    }
    Ok(batches)
}

/// The widest alignment a flat array's value buffer needs (`i128`, `i256`).
const VALUE_ALIGNMENT: usize = 16;

/// One column over `bytes` (its input's file), checked as untrusted data.
fn column(
    field: &Field,
    rows: usize,
    c: &ColumnRef,
    bytes: &Buffer,
) -> std::result::Result<ArrayRef, String> {
    let slice = |(start, len): (usize, usize)| match start.checked_add(len) {
        Some(end) if end <= bytes.len() => Ok(bytes.slice_with_length(start, len)),
        _ => Err(format!(
            "bytes {start}..{} lie outside input `{}` ({} bytes)",
            start.saturating_add(len),
            c.input,
            bytes.len()
        )),
    };
    // The IPC format aligns buffers to 8 bytes; values of 16 (decimals) need 16, so such a
    // buffer is copied (the only copy here: Basin's own writer aligns to 64).
    let aligned = |b: Buffer| match b.as_ptr().align_offset(VALUE_ALIGNMENT) {
        0 => b,
        _ => Buffer::from_slice_ref(b.as_slice()),
    };
    let (nulls, values) = c.buffers.split_first().ok_or("it lists no buffers")?;
    let nulls = nulls.map(slice).transpose()?;
    let values = values
        .iter()
        .map(|b| {
            b.ok_or_else(|| "a value buffer is missing".to_string())
                .and_then(slice)
                .map(aligned)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let data = ArrayData::try_new(
        field.data_type().clone(),
        rows,
        nulls,
        c.offset,
        values,
        Vec::new(),
    )
    .map_err(|e| e.to_string())?;
    Ok(make_array(data))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, BooleanArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Schema};

    use super::*;
    use crate::files::decode;
    use crate::options::RuntimeCounters;
    use crate::pool::Pool;

    fn input() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "n",
                Arc::new(Int64Array::from_iter(
                    (0..1000).map(|i| (i % 7 != 0).then_some(i)),
                )) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from_iter_values(
                    (0..1000).map(|i| format!("row {i}")),
                )),
            ),
            (
                "b",
                Arc::new(BooleanArray::from_iter((0..1000).map(|i| Some(i % 3 == 0)))),
            ),
        ])
        .unwrap()
    }

    /// A workspace (with a pool) whose input `t` holds `input()`.
    async fn workspace(dir: &std::path::Path) -> (Workspace, Arc<Pool>) {
        let counters = Arc::new(RuntimeCounters::default());
        let pool = Arc::new(Pool::new(dir.join("pool"), 64 << 20, counters));
        let mut ws = Workspace::create(dir, Some(pool.clone())).unwrap();
        let batch = input();
        let stream = futures::stream::iter([Ok(batch.clone())]);
        ws.write_input("t", batch.schema(), stream).await.unwrap();
        (ws, pool)
    }

    /// What the worker sends for `array`, a column it read from the file in `bytes` (or a
    /// slice of one): each buffer's place in the file, as `_reference` in
    /// python/basin/_invocation.py finds it.
    fn reference(array: &ArrayRef, bytes: &Buffer) -> ColumnRef {
        let data = array.to_data();
        let base = bytes.as_ptr() as usize;
        let place = |b: &Buffer| Some((b.as_ptr() as usize - base, b.len()));
        ColumnRef {
            input: "t".into(),
            offset: data.offset(),
            buffers: std::iter::once(data.nulls().and_then(|n| place(n.buffer())))
                .chain(data.buffers().iter().map(place))
                .collect(),
        }
    }

    fn piece(batch: &RecordBatch, bytes: &Buffer) -> Piece {
        Piece::Input {
            rows: batch.num_rows(),
            columns: batch
                .columns()
                .iter()
                .map(|a| reference(a, bytes))
                .collect(),
        }
    }

    /// The rows `offset..offset + rows` of `batch`, as pyarrow slices: the same buffers, an
    /// offset in rows.
    fn sliced(batch: &RecordBatch, bytes: &Buffer, offset: usize, rows: usize) -> Piece {
        let mut piece = piece(batch, bytes);
        if let Piece::Input { rows: n, columns } = &mut piece {
            *n = rows;
            columns.iter_mut().for_each(|c| c.offset += offset);
        }
        piece
    }

    /// The input's file as the worker maps it, and the batch it reads there.
    fn read(ws: &Workspace) -> (SchemaRef, RecordBatch, Buffer) {
        let bytes = ws.input_bytes("t", true).unwrap();
        let (schema, batches) = decode(&bytes, &|| String::from("input")).unwrap();
        (schema, batches[0].clone(), bytes)
    }

    #[tokio::test]
    async fn batches_handed_back_by_reference_read_as_the_input_whole_or_sliced_between_written_ones()
     {
        let dir = tempfile::tempdir().unwrap();
        let (ws, _pool) = workspace(dir.path()).await;
        let (schema, batch, bytes) = read(&ws);
        let pieces = vec![
            piece(&batch, &bytes),
            Piece::File { count: 2 },
            sliced(&batch, &bytes, 13, 500),
        ];
        let written = vec![batch.slice(0, 3), batch.slice(7, 1)];
        let out = assemble(&ws, "f", &schema, written, pieces, true).unwrap();
        let want = [
            input(),
            input().slice(0, 3),
            input().slice(7, 1),
            input().slice(13, 500),
        ];
        assert_eq!(out, want);
        // Not mapped: the input is read into memory, with the same result.
        let (ws, _pool) = workspace(dir.path()).await;
        let pieces = vec![sliced(&batch, &bytes, 13, 500)];
        let out = assemble(&ws, "f", &schema, Vec::new(), pieces, false).unwrap();
        assert_eq!(out, [input().slice(13, 500)]);
    }

    #[tokio::test]
    async fn a_reference_outside_the_input_to_another_input_or_of_the_wrong_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (ws, _pool) = workspace(dir.path()).await;
        let (schema, batch, bytes) = read(&ws);
        let refused = |pieces: Vec<Piece>, written: Vec<RecordBatch>, schema: &SchemaRef| {
            let e = assemble(&ws, "f", schema, written, pieces, true).unwrap_err();
            assert!(
                e.to_string().contains("function `f` returned a table"),
                "{e}"
            );
            e.to_string()
        };
        let mut far = piece(&batch, &bytes);
        if let Piece::Input { columns, .. } = &mut far {
            columns[0].buffers[1] = Some((bytes.len() - 8, 8000));
        }
        assert!(refused(vec![far], vec![], &schema).contains("lie outside input `t`"));
        let mut other = piece(&batch, &bytes);
        if let Piece::Input { columns, .. } = &mut other {
            columns[1].input = "secrets".into();
        }
        assert!(refused(vec![other], vec![], &schema).contains("no input `secrets`"));
        // The int64 column's buffers read as strings: offsets and UTF-8 are checked in full.
        let swapped = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Utf8, true),
            schema.field(1).clone(),
            schema.field(2).clone(),
        ]));
        refused(vec![piece(&batch, &bytes)], vec![], &swapped);
        // More rows than the buffers hold; and pieces that do not match the file's batches.
        let mut long = piece(&batch, &bytes);
        if let Piece::Input { rows, .. } = &mut long {
            *rows = 5000;
        }
        refused(vec![long], vec![], &schema);
        assert!(refused(vec![Piece::File { count: 1 }], vec![], &schema).contains("has no more"));
        let extra = vec![batch.clone()];
        assert!(refused(vec![piece(&batch, &bytes)], extra, &schema).contains("more batches"));
    }

    #[test]
    fn decimals_at_an_eight_byte_boundary_of_the_file_are_read_equal() {
        // Arrow IPC aligns buffers to 8 bytes; an i128 needs 16.
        let values: Vec<i128> = vec![12345, -1, 0, 99_999_999];
        let mut file = vec![0u8; 8];
        file.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        let bytes = Buffer::from_vec(file);
        let field = Field::new("amount", DataType::Decimal128(18, 2), false);
        let c = ColumnRef {
            input: "t".into(),
            offset: 1,
            buffers: vec![None, Some((8, 64))],
        };
        let array = column(&field, 3, &c, &bytes).unwrap();
        let want = arrow::array::Decimal128Array::from(values[1..].to_vec())
            .with_precision_and_scale(18, 2)
            .unwrap();
        assert_eq!(array.as_ref(), &want as &dyn Array);
    }

    #[tokio::test]
    async fn a_mapped_input_goes_back_to_the_pool_only_once_the_table_over_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (ws, pool) = workspace(dir.path()).await;
        let path = ws.input_path("t").unwrap().to_path_buf();
        // As after an invocation whose processes all ended: its inputs are to go back.
        ws.give_back.lock().unwrap().push(path.clone());
        let (schema, batch, bytes) = read(&ws);
        let out = assemble(&ws, "f", &schema, vec![], vec![piece(&batch, &bytes)], true).unwrap();
        drop((batch, bytes));
        drop(ws);
        assert!(!path.exists(), "out of the folder");
        assert_eq!(pool.counts(), (0, 0), "still mapped: not in the pool");
        assert_eq!(out[0], input());
        drop(out);
        assert_eq!(pool.counts(), (0, 1));
    }
}
