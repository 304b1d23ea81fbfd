//! The binary log's events as a stream under way receives them: transactions framed by
//! `BEGIN` (MySQL) or a GTID event (MariaDB) and ended by `XID` or a `COMMIT` (or a
//! `ROLLBACK` that the log keeps only for changes to non-transactional tables, which stand),
//! their row events, statements of their own (DDL, `TRUNCATE`), and the log's files.
//!
//! What Basin cannot apply exactly stops the stream with an error that names it, never
//! skipped in silence: XA transactions, compressed transactions, an incident the server
//! logged (events lost), row images without every column, rows outside a transaction, and
//! any event type it does not know.

use std::sync::Arc;
use std::time::Instant;

use basin_core::{Error, Result};
use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::binlog::row::BinlogRow;

use super::apply::{Change, Image, Op, Txn};
use super::gtid::{GTID_EVENT, Gtid};
use super::position::BinlogPos;
use super::stream::Follower;
use super::targets;
use crate::database::follow::too_big;
use crate::mysql::connect;

/// Event types the stream reads past: MariaDB's annotations, checkpoints and GTID lists;
/// MySQL's GTIDs (`BEGIN` follows), previous-GTID lists, row-query annotations, and the
/// statement-format helpers (`INTVAR`, `RAND`, `USER_VAR`) that precede a logged statement;
/// and the events a server may ignore by their flag.
const READ_PAST: [u8; 13] = [
    0x03, 0x05, 0x0d, 0x0e, 0x1c, 0x1d, 0x21, 0x22, 0x23, 0x24, 0xa0, 0xa1, 0xa3,
];

impl Follower<'_> {
    /// One event of the log.
    pub(super) async fn receive(&mut self, event: Event) -> Result<()> {
        let header = event.header();
        let here = |file: &str| BinlogPos {
            file: file.to_string(),
            offset: header.log_pos() as u64,
        };
        let commit_us = header.timestamp() as i64 * 1_000_000;
        if header.event_type_raw() == GTID_EVENT {
            let gtid = Gtid::read(header.server_id(), event.data())
                .ok_or_else(|| self.stop_at("a GTID event it cannot read", &here(&self.file)))?;
            if gtid.xa {
                return Err(self.xa(&here(&self.file)));
            }
            if let Some(open) = &self.open {
                return Err(self.stop_at("a transaction that never ended", &open.end));
            }
            if !gtid.standalone {
                self.open = Some(Txn::begin(here(&self.file), commit_us));
            }
            self.pending = Some(gtid);
            self.last_event = Instant::now();
            return Ok(());
        }
        let data = event
            .read_data()
            .map_err(|e| Error::io(format!("source `{}`: a binary log event: {e}", self.name)))?;
        match data {
            Some(EventData::RotateEvent(rotate)) => {
                // The server's first event is read before the format description says its
                // checksum's length, so its name ends in the checksum's four bytes.
                let name = rotate.name_raw();
                let name = match (self.described, self.checksum) {
                    (false, true) => &name[..name.len().saturating_sub(4)],
                    _ => name,
                };
                self.file = String::from_utf8_lossy(name).to_string();
                let start = BinlogPos {
                    file: self.file.clone(),
                    offset: rotate.position(),
                };
                self.seen = self.seen.clone().max(start);
                // Its own offset is in the file before: not a place in this one.
                self.last_event = Instant::now();
                return Ok(());
            }
            Some(EventData::FormatDescriptionEvent(_)) => self.described = true,
            Some(EventData::HeartbeatEvent) => {
                if header.log_pos() > 0 {
                    self.seen = self.seen.clone().max(here(&self.file));
                }
                self.report_lag();
                return Ok(()); // not news: the idle time goes on
            }
            Some(EventData::QueryEvent(query)) => {
                let text = query.query().trim().to_string();
                let upper = text.to_ascii_uppercase();
                if upper.starts_with("XA ") {
                    return Err(self.xa(&here(&self.file)));
                }
                match upper.as_str() {
                    "BEGIN" => match &self.open {
                        // After MariaDB's GTID event, which began it.
                        Some(open) if open.changes.is_empty() && self.pending.is_some() => {}
                        Some(open) => {
                            return Err(self.stop_at("a transaction that never ended", &open.end));
                        }
                        None => self.open = Some(Txn::begin(here(&self.file), commit_us)),
                    },
                    // A `ROLLBACK` in the log ends changes to non-transactional tables, which
                    // stand at the source (rolled-back changes to others are never logged).
                    "COMMIT" | "ROLLBACK" => self.end_transaction(here(&self.file), commit_us),
                    _ if self.open.is_none() => {
                        let end = here(&self.file);
                        self.statement(&query.schema(), &text, end, commit_us)
                            .await?;
                    }
                    // `SAVEPOINT`, `ROLLBACK TO`: inside the transaction, which the log
                    // already holds as it committed.
                    _ => {}
                }
            }
            Some(EventData::XidEvent(_)) => self.end_transaction(here(&self.file), commit_us),
            Some(EventData::RowsEvent(rows)) => self.rows(&rows, &here(&self.file))?,
            Some(EventData::TableMapEvent(_)) => {}
            _ if READ_PAST.contains(&header.event_type_raw()) => {}
            _ => {
                let what = match header.event_type_raw() {
                    0x1a => "an incident: the server says events were lost".to_string(),
                    0x26 => return Err(self.xa(&here(&self.file))),
                    0x28 | 0xa5..=0xab => "a compressed transaction".to_string(),
                    0xa4 => "an encrypted log".to_string(),
                    other => format!("an event of type {other:#04x}, which Basin does not read"),
                };
                return Err(self.stop_at(&what, &here(&self.file)).with_hint(
                    "turn off binary log compression (`binlog_transaction_compression`, MariaDB's `log_bin_compress`) and encryption at the source; after an incident, run `basin ingest SOURCE --full`",
                ));
            }
        }
        self.last_event = Instant::now();
        if header.log_pos() > 0 {
            self.seen = self.seen.clone().max(here(&self.file));
        }
        Ok(())
    }

    /// The stream stops at `what` (at `at`), with the position named.
    fn stop_at(&self, what: &str, at: &BinlogPos) -> Error {
        Error::invalid(format!(
            "source `{}`: the binary log holds {what} at {at}",
            self.name
        ))
    }

    fn xa(&self, at: &BinlogPos) -> Error {
        self.stop_at("an XA transaction, which change data capture does not apply", at)
            .with_hint("commit the tables' changes in ordinary transactions, or load the source with mode = \"snapshot\"")
    }

    /// A rows event of the open transaction: each row's images, for the tables streamed.
    fn rows(&mut self, rows: &RowsEventData<'_>, at: &BinlogPos) -> Result<()> {
        let Some(map) = self.stream.get_tme(rows.table_id()) else {
            return Err(self.stop_at(
                &format!(
                    "a rows event for table {} with no table map",
                    rows.table_id()
                ),
                at,
            ));
        };
        let table = (
            map.database_name().to_string(),
            map.table_name().to_string(),
        );
        if !self.targets.contains_key(&table) {
            return Ok(());
        }
        let Some(txn) = self.open.as_mut() else {
            return Err(Error::invalid(format!(
                "source `{}`: the binary log holds a row of {}.{} outside a transaction at {at}",
                self.name, table.0, table.1
            )));
        };
        let table = Arc::new(table);
        let op = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Op::Insert,
            RowsEventData::UpdateRowsEventV1(_)
            | RowsEventData::UpdateRowsEvent(_)
            | RowsEventData::PartialUpdateRowsEvent(_) => Op::Update,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => Op::Delete,
        };
        let mut names: Option<Option<Arc<[String]>>> = None;
        for row in rows.rows(map) {
            let (before, after) = row.map_err(|e| {
                Error::io(format!(
                    "source `{}`: a row of {}.{} in the binary log: {e}",
                    self.name, table.0, table.1
                ))
            })?;
            if names.is_none() {
                let first = before.as_ref().or(after.as_ref());
                names = Some(
                    first
                        .map(|row| column_names(row, &self.name, &table, at))
                        .transpose()?
                        .flatten(),
                );
            }
            txn.changes.push(Change {
                op,
                table: table.clone(),
                new: after.map(image),
                old: before.map(image),
                names: names.clone().flatten(),
            });
        }
        let limit = self.request.stream.max_transaction_changes;
        if txn.changes.len() > limit {
            return Err(too_big(&self.name, limit));
        }
        Ok(())
    }

    /// A statement outside a transaction: `TRUNCATE` of a streamed table is a change; any
    /// other (such as `ALTER TABLE`) commits the batch received before it, then reads the
    /// tables' columns again.
    async fn statement(
        &mut self,
        schema: &str,
        text: &str,
        end: BinlogPos,
        commit_us: i64,
    ) -> Result<()> {
        if let Some(table) = truncated_table(schema, text)
            && self.targets.contains_key(&table)
        {
            let mut txn = Txn::begin(end.clone(), commit_us);
            txn.changes.push(Change {
                op: Op::Truncate,
                table: Arc::new(table),
                new: None,
                old: None,
                names: None,
            });
            self.open = Some(txn);
            self.end_transaction(end, commit_us);
            return Ok(());
        }
        if let (Some(state), Some(gtid)) = (self.gtid.as_mut(), self.pending.take()) {
            state.apply(&gtid);
        }
        if !self.batch.is_empty() {
            self.commit_batch().await?;
        }
        // A connection of its own: DDL can come hours apart, past the server's idle timeout.
        let source = &self.request.source;
        let mut conn = connect::connect(source).await?;
        for target in self.targets.values_mut() {
            target.columns = targets::columns(
                &mut conn,
                source,
                &target.table,
                self.request.stream.skip_unsupported,
            )
            .await?;
        }
        let _ = conn.disconnect().await;
        Ok(())
    }

    /// The open transaction's commit (at `end`, `commit_us`): added to the batch.
    pub(super) fn end_transaction(&mut self, end: BinlogPos, commit_us: i64) {
        let Some(mut txn) = self.open.take() else {
            return;
        };
        txn.end = end;
        txn.commit_us = commit_us;
        if let (Some(state), Some(gtid)) = (self.gtid.as_mut(), self.pending.take()) {
            state.apply(&gtid);
            txn.id = Some(gtid);
            txn.gtid = Some(state.to_string());
        }
        if txn.changes.is_empty() {
            return;
        }
        self.batching.add(txn.changes.len());
        self.batch.push(txn);
    }
}

fn image(row: BinlogRow) -> Image {
    (0..row.len())
        .map(|i| row.as_ref(i).map(|v| v.clone().into_owned()))
        .collect()
}

/// The row's column names when the server logs them (`binlog_row_metadata = FULL`); `None`
/// when it logs only their places (`@1`, `@2`, ...), which must then be every column: a
/// partial row image (`binlog_row_image = MINIMAL` in some session) is refused.
fn column_names(
    row: &BinlogRow,
    source: &str,
    table: &(String, String),
    at: &BinlogPos,
) -> Result<Option<Arc<[String]>>> {
    let names: Vec<String> = row
        .columns_ref()
        .iter()
        .map(|c| c.name_str().to_string())
        .collect();
    let places: Vec<Option<usize>> = names
        .iter()
        .map(|n| n.strip_prefix('@').and_then(|i| i.parse().ok()))
        .collect();
    if places.iter().all(Option::is_some) {
        let whole = places.iter().enumerate().all(|(i, p)| *p == Some(i));
        if !whole {
            return Err(Error::invalid(format!(
                "source `{source}`: a row of {}.{} at {at} lacks columns (a partial row image)",
                table.0, table.1
            ))
            .with_hint(
                "SET GLOBAL binlog_row_image = 'FULL'; and in every session that writes the table",
            ));
        }
        return Ok(None);
    }
    Ok(Some(Arc::from(names)))
}

/// The table a `TRUNCATE [TABLE] [db.]t` statement empties, by `(database, table)`;
/// `schema` is the statement's default database.
fn truncated_table(schema: &str, text: &str) -> Option<(String, String)> {
    let rest = strip_keyword(text, "TRUNCATE")?;
    let rest = strip_keyword(rest, "TABLE").unwrap_or(rest);
    let name = rest.split_whitespace().next()?.trim_end_matches(';');
    let parts: Vec<String> = name
        .split('.')
        .map(|p| p.trim_matches('`').to_string())
        .collect();
    match parts.as_slice() {
        [table] => Some((schema.to_string(), table.clone())),
        [db, table] => Some((db.clone(), table.clone())),
        _ => None,
    }
}

/// `text` after `keyword` (any case) and the blanks after it.
fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    let rest = &text[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword) && rest.starts_with(char::is_whitespace))
        .then(|| rest.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_name_their_table() {
        assert_eq!(
            truncated_table("shop", "truncate table `Orders`"),
            Some(("shop".into(), "Orders".into()))
        );
        assert_eq!(
            truncated_table("x", "TRUNCATE shop.items;"),
            Some(("shop".into(), "items".into()))
        );
        assert_eq!(truncated_table("x", "ALTER TABLE T ADD C INT"), None);
        assert_eq!(truncated_table("x", "TRUNCATED"), None);
    }
}
