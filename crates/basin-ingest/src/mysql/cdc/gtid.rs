//! MariaDB's global transaction ids: `domain-server-sequence`, one per replication domain,
//! and the state `0-1-120,1-2-7` a replica resumes from (`@slave_connect_state`), which
//! holds wherever the log's files and offsets differ (another server after a failover, or
//! a file purged since). A stream that announces MariaDB's capability sees each
//! transaction's GTID event instead of `BEGIN` (`0xA2`: sequence number, domain, flags).

use std::collections::BTreeMap;
use std::fmt;

/// MariaDB's GTID event.
pub(super) const GTID_EVENT: u8 = 0xa2;
/// The transaction is one statement (such as DDL), with no `BEGIN`/`COMMIT` around it.
const FL_STANDALONE: u8 = 1;
/// An XA transaction's prepared or completed part.
const FL_XA: u8 = 64 | 128;

/// One transaction's GTID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub sequence: u64,
    /// A statement of its own: no `BEGIN` or `XID` follows.
    pub standalone: bool,
    /// Part of an XA transaction.
    pub xa: bool,
}

impl Gtid {
    /// The GTID event's data (after the header, which says the server).
    pub(super) fn read(server: u32, data: &[u8]) -> Option<Self> {
        Some(Self {
            sequence: u64::from_le_bytes(data.get(0..8)?.try_into().ok()?),
            domain: u32::from_le_bytes(data.get(8..12)?.try_into().ok()?),
            server,
            standalone: data.get(12)? & FL_STANDALONE != 0,
            xa: data.get(12)? & FL_XA != 0,
        })
    }
}

/// The last GTID applied in each domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct GtidState(BTreeMap<u32, (u32, u64)>);

impl GtidState {
    /// Reads `0-1-120,1-2-7` (empty: no transaction yet).
    pub(super) fn parse(text: &str) -> Option<Self> {
        let mut state = BTreeMap::new();
        for gtid in text.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            let mut parts = gtid.splitn(3, '-');
            let domain = parts.next()?.parse().ok()?;
            let server = parts.next()?.parse().ok()?;
            let sequence = parts.next()?.parse().ok()?;
            state.insert(domain, (server, sequence));
        }
        Some(Self(state))
    }

    pub(super) fn apply(&mut self, gtid: &Gtid) {
        self.0.insert(gtid.domain, (gtid.server, gtid.sequence));
    }

    /// Whether `gtid`'s transaction is in this state already (its domain is at or past it).
    pub(super) fn holds(&self, gtid: &Gtid) -> bool {
        self.0
            .get(&gtid.domain)
            .is_some_and(|(_, sequence)| gtid.sequence <= *sequence)
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (domain, (server, sequence)) in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{domain}-{server}-{sequence}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_apply_and_print() {
        let mut state = GtidState::parse("0-1-120, 1-2-7").unwrap();
        state.apply(&Gtid {
            domain: 0,
            server: 3,
            sequence: 121,
            standalone: false,
            xa: false,
        });
        assert_eq!(state.to_string(), "0-3-121,1-2-7");
        assert_eq!(GtidState::parse("").unwrap().to_string(), "");
        assert!(GtidState::parse("3e11fa47-71ca-11e1:1-5").is_none()); // MySQL's, not MariaDB's
        let mut data = 121u64.to_le_bytes().to_vec();
        data.extend(2u32.to_le_bytes());
        data.push(FL_STANDALONE);
        let gtid = Gtid::read(9, &data).unwrap();
        assert_eq!(
            (gtid.domain, gtid.server, gtid.sequence, gtid.standalone),
            (2, 9, 121, true)
        );
        assert!(Gtid::read(9, &data[..5]).is_none());
    }
}
