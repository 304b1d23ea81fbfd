//! The replication side of a source: its slot (created with an exported snapshot for the full
//! load), replication sessions, and what the server says about the slot and its lag.

use std::str::FromStr;
use std::time::Duration;

use basin_core::{Error, Result};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{Connection, Row};

use crate::postgres::connect::query_error;
use crate::postgres::source::PgSource;

/// The slot Basin creates for a source: `basin_<source>`, in the characters Postgres allows.
pub fn slot_name(source: &str) -> String {
    let mut name: String = format!("basin_{source}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(63);
    name
}

/// An LSN as Postgres prints it (`0/16B3748`).
pub fn format_lsn(lsn: u64) -> String {
    Lsn(lsn).to_pg_string()
}

pub fn parse_lsn(text: &str) -> Option<u64> {
    Lsn::parse(text).ok().map(|l| l.0)
}

fn replication_error(
    source: &str,
    doing: &str,
) -> impl FnOnce(pgwire_replication::PgWireError) -> Error {
    let context = format!("source `{source}`: {doing}");
    move |e| {
        let text = e.to_string();
        let hint = if text.contains("must be superuser or replication role")
            || text.contains("permission denied to start WAL sender")
            || text.contains("replication connection")
        {
            "the source's user needs REPLICATION (`ALTER ROLE basin REPLICATION;`) and a `host replication` line in pg_hba.conf (docs/ingest-postgres.md)"
        } else if text.contains("wal_level") {
            "set wal_level = logical in postgresql.conf and restart Postgres (docs/ingest-postgres.md)"
        } else if text.contains("replication slots") {
            "raise max_replication_slots (and max_wal_senders) in postgresql.conf"
        } else {
            "check the source's url and the server's log"
        };
        Error::io(format!("{context}: {text}")).with_hint(hint)
    }
}

/// How often a replication session tells the server the LSN Basin has committed.
pub(crate) const STATUS_INTERVAL: Duration = Duration::from_millis(500);

/// A replication session's settings for `source` reading `slot` through `publication`.
pub(crate) fn replication_config(
    source: &PgSource,
    slot: &str,
    publication: &str,
) -> Result<ReplicationConfig> {
    let options = PgConnectOptions::from_str(&source.url).map_err(|e| {
        Error::invalid(format!(
            "source `{}`: cannot read url `{}`",
            source.name, source.url
        ))
        .with_source(e)
    })?;
    if matches!(
        options.get_ssl_mode(),
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
    ) {
        return Err(Error::invalid(format!(
            "source `{}`: change data capture over TLS is not built yet (the url asks for sslmode={:?})",
            source.name,
            options.get_ssl_mode()
        ))
        .with_hint("use mode = \"snapshot\" for this source, or reach the server over a trusted network with sslmode=prefer"));
    }
    let mut config = ReplicationConfig::new(
        options.get_host(),
        options.get_username(),
        source.password.clone().unwrap_or_default(),
        options.get_database().unwrap_or(options.get_username()),
        slot,
        publication,
    )
    .with_port(options.get_port())
    .with_application_name("basin")
    .with_status_interval(STATUS_INTERVAL)
    .with_wakeup_interval(Duration::from_secs(1))
    .with_binary(true);
    config.buffer_events = 4096;
    Ok(config)
}

/// The slot's consistent point and the snapshot it exported, while the session that created
/// it stays open and runs nothing else (the snapshot lives until then).
pub(crate) struct CreatedSlot {
    pub session: ReplicationClient,
    pub consistent_point: u64,
    pub snapshot: String,
    pub system_id: String,
}

/// Creates `slot` (pgoutput) with an exported snapshot on a new replication session.
pub(crate) async fn create_slot(source: &PgSource, slot: &str) -> Result<CreatedSlot> {
    let name = source.name.as_str();
    let config = replication_config(source, slot, "unused")?;
    let mut session = ReplicationClient::connect_gated(config)
        .await
        .map_err(replication_error(name, "cannot open a replication session"))?;
    let system = session
        .identify_system()
        .await
        .map_err(replication_error(name, "cannot open a replication session"))?;
    // Waits for the write transactions open at this moment to end.
    let rows = session
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT",
            quote_slot(slot)?
        ))
        .await
        .map_err(replication_error(
            name,
            &format!("cannot create replication slot `{slot}`"),
        ))?;
    let row = rows.into_iter().next().unwrap_or_default();
    let text = |i: usize| {
        row.get(i)
            .and_then(|v| v.as_ref())
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let consistent_point = text(1).as_deref().and_then(parse_lsn);
    let (Some(consistent_point), Some(snapshot)) = (consistent_point, text(2)) else {
        return Err(Error::internal(format!(
            "source `{name}`: CREATE_REPLICATION_SLOT answered without a consistent point or snapshot"
        )));
    };
    Ok(CreatedSlot {
        session,
        consistent_point,
        snapshot,
        system_id: system.system_id,
    })
}

fn quote_slot(slot: &str) -> Result<&str> {
    if slot.is_empty()
        || !slot
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(Error::invalid(format!(
            "`{slot}` is not a replication slot name (lower-case letters, digits and `_`)"
        )));
    }
    Ok(slot)
}

/// What the server says about a slot.
#[derive(Clone, Debug)]
pub struct SlotState {
    pub active: bool,
    pub confirmed_flush_lsn: Option<u64>,
    pub current_lsn: u64,
    /// WAL bytes the slot's consumer has not confirmed.
    pub lag_bytes: Option<i64>,
}

/// The slot's state, or `None` if it does not exist.
pub(crate) async fn slot_state(
    conn: &mut PgConnection,
    source: &str,
    slot: &str,
) -> Result<Option<SlotState>> {
    let context = format!("source `{source}`: cannot read replication slot `{slot}`");
    let row = sqlx::query(
        "SELECT active, confirmed_flush_lsn::text, pg_current_wal_lsn()::text, \
         (pg_current_wal_lsn() - confirmed_flush_lsn)::int8 \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_error(&context))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let confirmed: Option<String> = row.try_get(1).map_err(query_error(&context))?;
    let current: String = row.try_get(2).map_err(query_error(&context))?;
    Ok(Some(SlotState {
        active: row.try_get(0).map_err(query_error(&context))?,
        confirmed_flush_lsn: confirmed.as_deref().and_then(parse_lsn),
        current_lsn: parse_lsn(&current).unwrap_or(0),
        lag_bytes: row.try_get(3).map_err(query_error(&context))?,
    }))
}

/// The slot's state once no session holds it, waiting up to 10 s: the session of a Basin
/// that was just killed takes a moment to end on the server.
pub(crate) async fn inactive_slot_state(
    conn: &mut PgConnection,
    source: &str,
    slot: &str,
) -> Result<Option<SlotState>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = slot_state(conn, source, slot).await?;
        match &state {
            Some(s) if s.active && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => return Ok(state),
        }
    }
}

/// Drops `slot` if it exists and no session holds it; `Ok(false)` if there was none.
pub(crate) async fn drop_slot(conn: &mut PgConnection, source: &str, slot: &str) -> Result<bool> {
    let state = inactive_slot_state(conn, source, slot).await?;
    match state {
        None => Ok(false),
        Some(state) if state.active => Err(Error::new(
            basin_core::ErrorKind::Conflict,
            format!("source `{source}`: replication slot `{slot}` is in use by another session"),
        )
        .with_hint(
            "stop the `basin ingest --follow` or `basin serve` streaming this source first",
        )),
        Some(_) => {
            sqlx::query("SELECT pg_drop_replication_slot($1)")
                .bind(slot)
                .execute(&mut *conn)
                .await
                .map_err(query_error(format!(
                    "source `{source}`: cannot drop replication slot `{slot}`"
                )))?;
            Ok(true)
        }
    }
}

/// Drops the slot Basin created for a source (`basin source rm`); `Ok(false)` if none.
pub async fn drop_source_slot(source: &PgSource) -> Result<bool> {
    let mut conn = crate::postgres::connect::connect(source).await?;
    let dropped = drop_slot(&mut conn, &source.name, &slot_name(&source.name)).await;
    let _ = conn.close().await;
    dropped
}

/// The slot of `source` and its lag in seconds: how long ago the oldest change it holds for
/// `publication` was committed at the source, 0 when none waits; `None` if there is no slot.
///
/// The slot's lag in bytes is no measure of time: Postgres writes WAL of its own (checkpoints,
/// running-transaction records) and of tables outside the publication, which no stream sends
/// until a keepalive confirms it. So, while a stream holds the slot, the server's own
/// measure (`pg_stat_replication.flush_lag`, null once caught up); otherwise the slot is
/// peeked, without consuming it, for the first transaction with a change that pgoutput
/// would send (see [`oldest_waiting_commit`]).
pub async fn source_slot_lag(
    source: &PgSource,
    publication: &str,
) -> Result<Option<(SlotState, f64)>> {
    let mut conn = crate::postgres::connect::connect(source).await?;
    let lag = slot_lag(&mut conn, source, publication).await;
    let _ = conn.close().await;
    lag
}

async fn slot_lag(
    conn: &mut PgConnection,
    source: &PgSource,
    publication: &str,
) -> Result<Option<(SlotState, f64)>> {
    let slot = slot_name(&source.name);
    let Some(state) = slot_state(conn, &source.name, &slot).await? else {
        return Ok(None);
    };
    if state.lag_bytes.unwrap_or(0) <= 0 {
        return Ok(Some((state, 0.0)));
    }
    let context = format!(
        "source `{}`: cannot read the lag of slot `{slot}`",
        source.name
    );
    let seconds = if state.active {
        let lag: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM r.flush_lag)::float8 FROM pg_stat_replication r \
             JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = $1",
        )
        .bind(&slot)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error(&context))?
        .flatten();
        lag.unwrap_or(0.0)
    } else {
        let messages: Vec<Vec<u8>> = sqlx::query_scalar(&format!(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, {PEEK_MESSAGES}, \
             'proto_version', '1', 'publication_names', $2) LIMIT {PEEK_MESSAGES}"
        ))
        .bind(&slot)
        .bind(publication)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error(&context))?;
        match oldest_waiting_commit(&messages) {
            Some(commit_us) => {
                let now_us = chrono::Utc::now().timestamp_micros();
                ((now_us - commit_us) as f64 / 1e6).max(0.0)
            }
            None => 0.0,
        }
    };
    Ok(Some((state, seconds)))
}

/// How many pgoutput messages a status peek reads at most.
const PEEK_MESSAGES: usize = 1000;

/// The commit time of the first transaction among `messages` with a change in it: Postgres 14
/// sends empty ones (a Begin, then its Commit) for transactions of other tables. If the peek
/// saw only empty ones, the first one's time: the lag is then at most that.
fn oldest_waiting_commit(messages: &[Vec<u8>]) -> Option<i64> {
    let with_changes = messages.windows(2).find_map(|pair| {
        let next = pair[1].first().copied();
        begin_commit_unix_us(&pair[0]).filter(|_| next != Some(b'C'))
    });
    let full = messages.len() >= PEEK_MESSAGES;
    with_changes.or_else(|| {
        full.then(|| messages.iter().find_map(|m| begin_commit_unix_us(m)))
            .flatten()
    })
}

/// The commit time (µs since the Unix epoch) of a pgoutput Begin message: `B`, the final
/// LSN, then the commit time in µs since 2000-01-01.
fn begin_commit_unix_us(message: &[u8]) -> Option<i64> {
    const POSTGRES_EPOCH_UNIX_US: i64 = 946_684_800_000_000;
    if message.first() != Some(&b'B') {
        return None;
    }
    let at = message.get(9..17)?;
    Some(i64::from_be_bytes(at.try_into().ok()?) + POSTGRES_EPOCH_UNIX_US)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_what_postgres_allows() {
        assert_eq!(slot_name("shop"), "basin_shop");
        assert_eq!(slot_name("Shop-EU"), "basin_shop_eu");
        assert_eq!(slot_name(&"x".repeat(80)).len(), 63);
        assert!(quote_slot("basin_shop").is_ok());
        assert!(quote_slot("basin shop").is_err());
    }

    #[test]
    fn a_begin_message_gives_its_commit_time() {
        // 2000-01-01 plus one day, in µs, after `B` and an LSN.
        let mut begin = vec![b'B'];
        begin.extend_from_slice(&0x16B_3748u64.to_be_bytes());
        begin.extend_from_slice(&86_400_000_000i64.to_be_bytes());
        begin.extend_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            begin_commit_unix_us(&begin),
            Some(946_684_800_000_000 + 86_400_000_000)
        );
        let commit = b"C...".to_vec();
        let insert = b"I...".to_vec();
        let at = |day: i64| {
            let mut m = begin.clone();
            m[9..17].copy_from_slice(&(day * 86_400_000_000).to_be_bytes());
            m
        };
        // An empty transaction (Postgres 14) is skipped; the first with a change counts.
        let stream = [at(1), commit.clone(), at(2), insert.clone(), commit.clone()];
        assert_eq!(
            oldest_waiting_commit(&stream),
            Some(946_684_800_000_000 + 2 * 86_400_000_000)
        );
        assert_eq!(oldest_waiting_commit(&[at(1), commit.clone()]), None);
        assert_eq!(oldest_waiting_commit(&[]), None);
        begin[0] = b'C';
        assert_eq!(begin_commit_unix_us(&begin), None);
        assert_eq!(begin_commit_unix_us(b"B12"), None);
    }

    #[test]
    fn lsns_print_as_postgres_does() {
        assert_eq!(format_lsn(0x016B_3748), "0/16B3748");
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
    }
}
