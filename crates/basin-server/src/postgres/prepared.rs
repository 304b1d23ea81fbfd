//! What a connection's named prepared statements and portals hold, counted for `[server]
//! pg_max_prepared` and `pg_max_prepared_size` (pgwire keeps them without a bound).

use std::collections::HashMap;

use datafusion_postgres::pgwire;
use pgwire::messages::PgWireFrontendMessage;

/// The named prepared statements (`S`) and portals (`P`) a connection has open, as its
/// messages open and close them (pgwire's store cannot be counted).
#[derive(Default)]
pub(super) struct Prepared {
    open: HashMap<(u8, String), usize>,
    /// The bytes of text and parameters the open ones hold.
    bytes: usize,
}

impl Prepared {
    /// The name a `Parse` or `Bind` message opens (unnamed ones replace each other), and the
    /// bytes it holds: a statement's text and parameter types, a portal's parameters.
    pub(super) fn opens(&self, message: &PgWireFrontendMessage) -> Option<((u8, String), usize)> {
        let named = |kind: u8, name: &Option<String>| {
            name.as_ref()
                .filter(|n| !n.is_empty())
                .map(|n| (kind, n.clone()))
        };
        match message {
            PgWireFrontendMessage::Parse(parse) => {
                named(b'S', &parse.name).map(|n| (n, parse.query.len() + 4 * parse.type_oids.len()))
            }
            PgWireFrontendMessage::Bind(bind) => named(b'P', &bind.portal_name).map(|n| {
                let values: usize = bind.parameters.iter().flatten().map(|v| v.len()).sum();
                (n, values + 4 * bind.parameters.len())
            }),
            _ => None,
        }
    }

    /// The name a `Close` message closes.
    pub(super) fn closes(message: &PgWireFrontendMessage) -> Option<(u8, String)> {
        match message {
            PgWireFrontendMessage::Close(close) => {
                Some((close.target_type, close.name.clone().unwrap_or_default()))
            }
            _ => None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.open.len()
    }

    pub(super) fn contains(&self, name: &(u8, String)) -> bool {
        self.open.contains_key(name)
    }

    /// The bytes held once `name` holds `size` (replacing what it held).
    pub(super) fn bytes_with(&self, name: &(u8, String), size: usize) -> usize {
        self.bytes - self.open.get(name).copied().unwrap_or(0) + size
    }

    pub(super) fn insert(&mut self, name: (u8, String), size: usize) {
        self.bytes = self.bytes_with(&name, size);
        self.open.insert(name, size);
    }

    pub(super) fn remove(&mut self, name: &(u8, String)) {
        if let Some(size) = self.open.remove(name) {
            self.bytes -= size;
        }
    }
}
