//! A decoder of the pgoutput messages (protocol version 1) that carry row changes: Relation,
//! Insert, Update, Delete and Truncate. Begin and Commit come decoded from
//! `pgwire-replication`; Origin, Type and logical Message are skipped.
//!
//! The format: postgresql.org/docs/current/protocol-logicalrep-message-formats.html. Values
//! are kept as the bytes the server sent (with `binary 'true'`, each type's `send` encoding,
//! the same as binary COPY's), to be decoded into Arrow in batches.

use bytes::Bytes;

/// A column of a Relation message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RelationColumn {
    pub name: String,
    /// Part of the replica identity (the key an update or delete names its row by).
    pub key: bool,
    pub type_oid: u32,
    pub type_mod: i32,
}

/// A table as the stream describes it: sent before the first change to it in a session, and
/// again whenever its columns change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Relation {
    pub id: u32,
    pub schema: String,
    pub name: String,
    /// `d` default (the primary key), `n` nothing, `f` full (every column), `i` an index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// One column's value in a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    /// A TOASTed value the update left unchanged: not sent.
    Unchanged,
    /// The text output of the type (servers without binary logical replication).
    Text(Bytes),
    /// The type's binary `send` encoding.
    Binary(Bytes),
}

/// A row image: a value per column of the relation, in its order.
pub(crate) type Tuple = Vec<Value>;

/// A decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Message {
    Relation(Relation),
    Insert {
        relation: u32,
        new: Tuple,
    },
    /// `old` is the key (`K`) or the whole old row (`O`, replica identity full) when the
    /// key changed or the identity is full; else only `new` is sent.
    Update {
        relation: u32,
        old: Option<Tuple>,
        new: Tuple,
    },
    /// `old` is the key, or the whole row with replica identity full.
    Delete {
        relation: u32,
        old: Tuple,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// Begin, Commit, Origin, Type, logical messages: nothing to apply.
    Other(u8),
}

/// A message that does not parse: the stream is not what Basin expects.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a pgoutput message does not parse: {}", self.0)
    }
}

struct Reader<'a> {
    data: &'a Bytes,
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| {
            ParseError(format!(
                "it ends at byte {} where {n} more were expected",
                self.data.len()
            ))
        })?;
        let slice = &self.data[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, ParseError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, ParseError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(self.i32()? as u32)
    }

    fn cstr(&mut self) -> Result<String, ParseError> {
        let rest = &self.data[self.at..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| ParseError("a string has no terminating zero".into()))?;
        let s = std::str::from_utf8(&rest[..len])
            .map_err(|_| ParseError("a name is not UTF-8".into()))?
            .to_string();
        self.at += len + 1;
        Ok(s)
    }

    /// A slice of the message without copying it.
    fn bytes(&mut self, n: usize) -> Result<Bytes, ParseError> {
        let start = self.at;
        self.take(n)?;
        Ok(self.data.slice(start..start + n))
    }

    fn tuple(&mut self) -> Result<Tuple, ParseError> {
        let count = self.i16()?;
        if count < 0 {
            return Err(ParseError(format!("a row has {count} columns")));
        }
        (0..count)
            .map(|_| match self.u8()? {
                b'n' => Ok(Value::Null),
                b'u' => Ok(Value::Unchanged),
                kind @ (b't' | b'b') => {
                    let len = self.i32()?;
                    if len < 0 {
                        return Err(ParseError(format!("a value of {len} bytes")));
                    }
                    let value = self.bytes(len as usize)?;
                    Ok(if kind == b'b' {
                        Value::Binary(value)
                    } else {
                        Value::Text(value)
                    })
                }
                other => Err(ParseError(format!(
                    "unknown value kind `{}`",
                    other as char
                ))),
            })
            .collect()
    }
}

/// Decodes one pgoutput message (the payload of an XLogData).
pub(crate) fn parse(data: &Bytes) -> Result<Message, ParseError> {
    let mut r = Reader { data, at: 0 };
    let tag = r.u8()?;
    Ok(match tag {
        b'R' => {
            let id = r.u32()?;
            let schema = r.cstr()?;
            let name = r.cstr()?;
            let replica_identity = r.u8()?;
            let count = r.i16()?;
            let mut columns = Vec::with_capacity(count.max(0) as usize);
            for _ in 0..count {
                let flags = r.u8()?;
                columns.push(RelationColumn {
                    name: r.cstr()?,
                    key: flags & 1 == 1,
                    type_oid: r.u32()?,
                    type_mod: r.i32()?,
                });
            }
            Message::Relation(Relation {
                id,
                schema,
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'N' => Message::Insert {
                    relation,
                    new: r.tuple()?,
                },
                other => return Err(unexpected("an insert", other)),
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let mut old = None;
            let mut kind = r.u8()?;
            if kind == b'K' || kind == b'O' {
                old = Some(r.tuple()?);
                kind = r.u8()?;
            }
            if kind != b'N' {
                return Err(unexpected("an update", kind));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'K' | b'O' => Message::Delete {
                    relation,
                    old: r.tuple()?,
                },
                other => return Err(unexpected("a delete", other)),
            }
        }
        b'T' => {
            let count = r.i32()?;
            let _options = r.u8()?;
            let relations = (0..count.max(0))
                .map(|_| r.u32())
                .collect::<Result<_, _>>()?;
            Message::Truncate { relations }
        }
        other => Message::Other(other),
    })
}

fn unexpected(what: &str, tag: u8) -> ParseError {
    ParseError(format!("{what} has a row marked `{}`", tag as char))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds messages the way pgoutput writes them.
    #[derive(Default)]
    struct Msg(Vec<u8>);

    impl Msg {
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn i16(mut self, v: i16) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn str(mut self, v: &str) -> Self {
            self.0.extend(v.as_bytes());
            self.0.push(0);
            self
        }
        fn binary(self, v: &[u8]) -> Self {
            let mut m = self.u8(b'b').i32(v.len() as i32);
            m.0.extend(v);
            m
        }
        fn text(self, v: &str) -> Self {
            let mut m = self.u8(b't').i32(v.len() as i32);
            m.0.extend(v.as_bytes());
            m
        }
        fn done(self) -> Bytes {
            Bytes::from(self.0)
        }
    }

    #[test]
    fn a_relation_names_its_columns_and_key() {
        let data = Msg::default()
            .u8(b'R')
            .i32(16384)
            .str("public")
            .str("orders")
            .u8(b'd')
            .i16(2)
            .u8(1)
            .str("id")
            .i32(20)
            .i32(-1)
            .u8(0)
            .str("note")
            .i32(25)
            .i32(-1)
            .done();
        let Message::Relation(relation) = parse(&data).unwrap() else {
            panic!("not a relation");
        };
        assert_eq!(relation.id, 16384);
        assert_eq!(
            (relation.schema.as_str(), relation.name.as_str()),
            ("public", "orders")
        );
        assert_eq!(relation.replica_identity, b'd');
        assert_eq!(
            relation.columns,
            vec![
                RelationColumn {
                    name: "id".into(),
                    key: true,
                    type_oid: 20,
                    type_mod: -1
                },
                RelationColumn {
                    name: "note".into(),
                    key: false,
                    type_oid: 25,
                    type_mod: -1
                },
            ]
        );
    }

    #[test]
    fn inserts_updates_and_deletes_keep_each_value_kind() {
        let insert = Msg::default()
            .u8(b'I')
            .i32(7)
            .u8(b'N')
            .i16(3)
            .binary(&42i64.to_be_bytes())
            .u8(b'n')
            .text("hé")
            .done();
        assert_eq!(
            parse(&insert).unwrap(),
            Message::Insert {
                relation: 7,
                new: vec![
                    Value::Binary(Bytes::copy_from_slice(&42i64.to_be_bytes())),
                    Value::Null,
                    Value::Text(Bytes::from("hé")),
                ]
            }
        );
        // A key change: the old key, then the new row with an unchanged TOASTed value.
        let update = Msg::default()
            .u8(b'U')
            .i32(7)
            .u8(b'K')
            .i16(2)
            .binary(&[1])
            .u8(b'n')
            .u8(b'N')
            .i16(2)
            .binary(&[2])
            .u8(b'u')
            .done();
        assert_eq!(
            parse(&update).unwrap(),
            Message::Update {
                relation: 7,
                old: Some(vec![Value::Binary(Bytes::from_static(&[1])), Value::Null]),
                new: vec![Value::Binary(Bytes::from_static(&[2])), Value::Unchanged],
            }
        );
        let plain = Msg::default()
            .u8(b'U')
            .i32(7)
            .u8(b'N')
            .i16(1)
            .binary(&[3])
            .done();
        assert!(matches!(
            parse(&plain).unwrap(),
            Message::Update { old: None, .. }
        ));
        let delete = Msg::default()
            .u8(b'D')
            .i32(7)
            .u8(b'O')
            .i16(1)
            .binary(&[9])
            .done();
        assert_eq!(
            parse(&delete).unwrap(),
            Message::Delete {
                relation: 7,
                old: vec![Value::Binary(Bytes::from_static(&[9]))]
            }
        );
    }

    #[test]
    fn truncate_lists_its_tables_and_other_messages_pass() {
        let truncate = Msg::default().u8(b'T').i32(2).u8(0).i32(7).i32(8).done();
        assert_eq!(
            parse(&truncate).unwrap(),
            Message::Truncate {
                relations: vec![7, 8]
            }
        );
        let typ = Msg::default()
            .u8(b'Y')
            .i32(1)
            .str("public")
            .str("mood")
            .done();
        assert_eq!(parse(&typ).unwrap(), Message::Other(b'Y'));
    }

    #[test]
    fn cut_or_malformed_messages_are_errors_not_panics() {
        let insert = Msg::default()
            .u8(b'I')
            .i32(7)
            .u8(b'N')
            .i16(1)
            .binary(&42i64.to_be_bytes())
            .done();
        for cut in 0..insert.len() {
            assert!(parse(&insert.slice(..cut)).is_err(), "cut at {cut}");
        }
        let bad_kind = Msg::default()
            .u8(b'I')
            .i32(7)
            .u8(b'N')
            .i16(1)
            .u8(b'x')
            .done();
        assert!(parse(&bad_kind).is_err());
        let negative = Msg::default()
            .u8(b'I')
            .i32(7)
            .u8(b'N')
            .i16(1)
            .u8(b'b')
            .i32(-5)
            .done();
        assert!(parse(&negative).is_err());
        let no_new = Msg::default()
            .u8(b'U')
            .i32(7)
            .u8(b'K')
            .i16(0)
            .u8(b'X')
            .done();
        assert!(parse(&no_new).is_err());
    }
}
