//! Row images from pgoutput tuples: raw values by column, the TOASTed values an update left
//! unchanged, keys compared as bytes, and rows decoded into Arrow as binary COPY would be.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use basin_core::{Error, Result};
use bytes::Bytes;

use super::pgoutput::{Relation, Tuple, Value};
use crate::postgres::copy_decode::{CopyDecoder, DecodeError, SIGNATURE};
use crate::postgres::types::Decode;

/// The raw value of each of `columns` (names) in `tuple` sent under `relation`; `None` for
/// NULL or a column the relation does not have.
pub(crate) fn values(
    relation: &Relation,
    tuple: &Tuple,
    columns: &[String],
) -> std::result::Result<Vec<Option<Bytes>>, String> {
    columns
        .iter()
        .map(|name| {
            let Some(i) = relation.columns.iter().position(|c| &c.name == name) else {
                return Ok(None);
            };
            match tuple.get(i) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Binary(b)) => Ok(Some(b.clone())),
                Some(Value::Unchanged) => Err(format!("column {name}: an unchanged TOASTed value")),
                Some(Value::Text(_)) => Err(format!("column {name}: a value in text format")),
            }
        })
        .collect()
}

/// `tuple` with the TOASTed values an update left unchanged taken from the old row.
pub(crate) fn fill_unchanged(new: &Tuple, old: Option<&Tuple>) -> Tuple {
    new.iter()
        .enumerate()
        .map(|(i, v)| match (v, old.and_then(|o| o.get(i))) {
            (Value::Unchanged, Some(Value::Binary(b))) => Value::Binary(b.clone()),
            _ => v.clone(),
        })
        .collect()
}

pub(crate) fn key_bytes(values: &[Option<Bytes>]) -> Vec<u8> {
    let mut key = Vec::new();
    for v in values {
        match v {
            Some(b) => {
                key.extend((b.len() as i32).to_be_bytes());
                key.extend_from_slice(b);
            }
            None => key.extend((-1i32).to_be_bytes()),
        }
    }
    key
}

/// Decodes rows of raw values (each `kinds` in order) into one batch of `schema`.
pub(crate) fn decode_rows(
    schema: SchemaRef,
    kinds: Vec<Decode>,
    rows: &[Vec<Option<Bytes>>],
) -> Result<RecordBatch> {
    let mut data = SIGNATURE.to_vec();
    data.extend([0u8; 8]);
    for row in rows {
        data.extend((row.len() as i16).to_be_bytes());
        for v in row {
            match v {
                Some(b) => {
                    data.extend((b.len() as i32).to_be_bytes());
                    data.extend_from_slice(b);
                }
                None => data.extend((-1i32).to_be_bytes()),
            }
        }
    }
    data.extend((-1i16).to_be_bytes());
    let mut decoder = CopyDecoder::new(schema.clone(), kinds, rows.len().max(1));
    let mut batches = Vec::new();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let bad = |e: DecodeError| {
        let column = e
            .column
            .and_then(|i| names.get(i))
            .cloned()
            .unwrap_or_default();
        Error::invalid(format!("column {column}: {}", e.message))
            .with_hint("fix the value at the source")
    };
    decoder.push(&data, &mut batches).map_err(bad)?;
    batches.extend(decoder.finish().map_err(bad)?);
    arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| Error::internal(format!("decoded changes do not form a batch: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[u8]) -> Value {
        Value::Binary(Bytes::copy_from_slice(v))
    }

    #[test]
    fn unchanged_toasted_values_come_from_the_old_row_when_it_has_them() {
        let new = vec![b(&[1]), Value::Unchanged, Value::Unchanged];
        let old = vec![b(&[1]), b(b"big"), Value::Null];
        assert_eq!(
            fill_unchanged(&new, Some(&old)),
            vec![b(&[1]), b(b"big"), Value::Unchanged]
        );
        assert_eq!(fill_unchanged(&new, None), new);
    }

    #[test]
    fn keys_tell_null_from_empty_and_values_apart() {
        let empty = Bytes::new();
        let one = Bytes::from_static(&[1]);
        assert_ne!(key_bytes(&[None]), key_bytes(&[Some(empty.clone())]));
        assert_ne!(
            key_bytes(&[Some(one.clone()), Some(empty.clone())]),
            key_bytes(&[Some(empty), Some(one.clone())])
        );
        assert_eq!(key_bytes(&[Some(one.clone())]), key_bytes(&[Some(one)]));
    }
}
