//! Parallel readers within one table: a large table whose primary key is one integer column
//! is read in key ranges, one per reader, each reader in the same consistent snapshot (so
//! the ranges together are the table at the load's instant). The ranges split the key's span
//! `[MIN, MAX]` evenly, so keys spread unevenly give uneven shares; the first and last ranges
//! are open, so no row falls outside them.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::connect::{self, MySource, MyTable, failed, quote};
use super::types::{Kind, MyColumn};
use basin_core::Result;

/// A table is split only if each part would hold about this many rows (estimated).
pub(super) const MIN_PART_ROWS: u64 = 50_000;

/// One reader's piece of work: a whole table, or a range of its key.
pub(super) struct Part {
    /// The table's place in the plan.
    pub table: usize,
    pub range: Option<KeyRange>,
}

/// `low <= column < high`, either end open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KeyRange {
    pub column: String,
    pub low: Option<i64>,
    pub high: Option<i64>,
}

impl KeyRange {
    /// The `WHERE` clause that reads the range.
    pub(super) fn predicate(&self) -> String {
        let column = quote(&self.column);
        match (self.low, self.high) {
            (Some(low), Some(high)) => format!(" WHERE {column} >= {low} AND {column} < {high}"),
            (Some(low), None) => format!(" WHERE {column} >= {low}"),
            (None, Some(high)) => format!(" WHERE {column} < {high}"),
            (None, None) => String::new(),
        }
    }
}

/// The parts of `tables` (each with its loadable columns) for `readers` readers; `conn` is a
/// reader in the load's snapshot, where each split table's key span is read.
pub(super) async fn parts(
    source: &MySource,
    conn: &mut Conn,
    tables: &[(&MyTable, &[(MyColumn, Kind)])],
    readers: usize,
) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    for (i, (table, columns)) in tables.iter().enumerate() {
        let wanted = wanted(table, readers);
        let column = match wanted {
            1 => None,
            _ => integer_key(source, conn, table, columns).await?,
        };
        let span = match &column {
            Some(column) => {
                let statement = format!(
                    "SELECT MIN({c}), MAX({c}) FROM {}",
                    table.quoted(),
                    c = quote(column)
                );
                conn.query_first::<(Option<i64>, Option<i64>), _>(statement)
                    .await
                    .map_err(|e| {
                        failed(
                            source,
                            &format!("cannot read the key span of {}", table.display()),
                            e,
                        )
                    })?
            }
            None => None,
        };
        match (column, span) {
            (Some(column), Some((Some(min), Some(max)))) => parts.extend(
                split(&column, min, max, wanted)
                    .into_iter()
                    .map(|range| Part {
                        table: i,
                        range: Some(range),
                    }),
            ),
            _ => parts.push(Part {
                table: i,
                range: None,
            }),
        }
    }
    Ok(parts)
}

/// How many parts `table` would be read in by `readers` readers (by its estimated rows; one
/// if its key is not one integer column, found once the snapshot is open).
pub(super) fn wanted(table: &MyTable, readers: usize) -> usize {
    table
        .estimated_rows
        .map_or(1, |rows| (rows / MIN_PART_ROWS) as usize)
        .clamp(1, readers.max(1))
}

/// The table's primary key, if it is one integer column Basin loads.
async fn integer_key(
    source: &MySource,
    conn: &mut Conn,
    table: &MyTable,
    columns: &[(MyColumn, Kind)],
) -> Result<Option<String>> {
    let key = connect::primary_key(source, conn, table).await?;
    let [column] = key.as_slice() else {
        return Ok(None);
    };
    let integer = columns
        .iter()
        .any(|(c, kind)| &c.name == column && matches!(kind, Kind::Int | Kind::Long));
    Ok(integer.then(|| column.clone()))
}

/// `[min, max]` in `n` ranges of about equal span, the first and last open.
fn split(column: &str, min: i64, max: i64, n: usize) -> Vec<KeyRange> {
    let span = (max as i128 - min as i128 + 1).max(1);
    let n = (n as i128).min(span).max(1);
    let bounds: Vec<i64> = (1..n)
        .map(|i| (min as i128 + span * i / n) as i64)
        .collect();
    (0..=bounds.len())
        .map(|i| KeyRange {
            column: column.to_string(),
            low: i.checked_sub(1).map(|j| bounds[j]),
            high: bounds.get(i).copied(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_span_without_overlap() {
        let ranges = split("id", 1, 100, 3);
        assert_eq!(ranges.len(), 3);
        assert_eq!((ranges[0].low, ranges[0].high), (None, Some(34)));
        assert_eq!((ranges[1].low, ranges[1].high), (Some(34), Some(67)));
        assert_eq!((ranges[2].low, ranges[2].high), (Some(67), None));
        assert_eq!(ranges[1].predicate(), " WHERE `id` >= 34 AND `id` < 67");
        assert_eq!(split("id", 5, 5, 4).len(), 1);
        let wide = split("id", i64::MIN, i64::MAX, 2);
        assert_eq!((wide[0].high, wide[1].low), (Some(0), Some(0)));
    }
}
