//! Snapshot ids in Basin's own JSON (the HTTP API, `--format json`) are strings:
//! `"8599806384497658719"`. They are random 64-bit numbers, most of them past 2^53, which a
//! JSON number read as a double (JavaScript, jq) would round. Reading accepts a number too.
//! The Iceberg REST catalog keeps numbers, as its specification says.

use serde::{Deserialize, Deserializer, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Number(i64),
    Text(String),
}

impl Id {
    fn parse<E: serde::de::Error>(self) -> Result<i64, E> {
        match self {
            Id::Number(n) => Ok(n),
            Id::Text(s) => s
                .parse()
                .map_err(|_| E::custom(format!("`{s}` is not a snapshot id"))),
        }
    }
}

pub(crate) fn serialize<S: Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Id::deserialize(d)?.parse()
}

/// The same for an id that may be absent (`null`).
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(id: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.collect_str(id),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<Id>::deserialize(d)?.map(Id::parse).transpose()
    }
}

#[cfg(test)]
mod tests {
    use crate::SnapshotSummary;

    #[test]
    fn snapshot_ids_are_exact_strings_and_read_back_from_either_form() {
        let snapshot = SnapshotSummary {
            snapshot_id: 8599806384497658719,
            parent_id: None,
            timestamp_ms: 1,
            operation: "append".into(),
            added_records: Some(2),
            total_records: Some(2),
        };
        let json = serde_json::to_value(&snapshot).expect("json");
        assert_eq!(json["snapshot_id"], "8599806384497658719");
        assert_eq!(json["parent_id"], serde_json::Value::Null);
        let back: SnapshotSummary = serde_json::from_value(json).expect("read back");
        assert_eq!(back.snapshot_id, 8599806384497658719);
        let old: SnapshotSummary = serde_json::from_str(
            r#"{"snapshot_id": -1, "parent_id": 7, "timestamp_ms": 1, "operation": "append",
                "added_records": null, "total_records": null}"#,
        )
        .expect("numbers read too");
        assert_eq!((old.snapshot_id, old.parent_id), (-1, Some(7)));
    }
}
