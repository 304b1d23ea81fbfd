//! Who wrote a commit's tables, and what it read: the `basin.lineage` commit property, kept
//! with the commit (and in each table's new snapshot summary, as every commit property is).
//! An import, a triggered function's output, a pipeline model and a database source each
//! say so where they commit; `basin lineage` and `/api/v1/lineage` read the commits of a ref
//! back into a graph of tables and their writers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The commit property holding a [`Writer`] as JSON.
pub const PROPERTY: &str = "basin.lineage";

/// What wrote a commit's tables.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Writer {
    /// `import`, `function`, `model` or `source`.
    pub kind: String,
    /// The files imported, the function, `PROJECT.MODEL`, or the source's name.
    pub name: String,
    /// The tables it read (`ns.table`), for a model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
}

impl Writer {
    pub fn new(kind: &str, name: impl Into<String>, reads: Vec<String>) -> Self {
        Self {
            kind: kind.to_string(),
            name: name.into(),
            reads,
        }
    }

    /// As the commit property's value.
    pub fn property(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The writer a commit's properties name: its lineage, or the database source whose
    /// changes it applied (`basin.source`); `None` for a commit that says neither (a merge,
    /// an engine's commit through Iceberg REST, maintenance).
    pub fn of(properties: &BTreeMap<String, String>) -> Option<Self> {
        if let Some(writer) = properties
            .get(PROPERTY)
            .and_then(|v| serde_json::from_str(v).ok())
        {
            return Some(writer);
        }
        properties
            .get(crate::SOURCE_PROPERTY)
            .map(|source| Self::new("source", source.clone(), Vec::new()))
    }
}

/// An import's writer: the files' names (without their folders), the first three and how
/// many more.
pub fn imported(sources: &[String]) -> Writer {
    let names: Vec<&str> = sources
        .iter()
        .map(|s| s.rsplit('/').next().unwrap_or(s))
        .collect();
    let name = match names.len() {
        0..=3 => names.join(", "),
        n => format!("{} and {} more", names[..3].join(", "), n - 3),
    };
    Writer::new("import", name, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_survives_its_property_and_sources_are_writers() {
        let model = Writer::new("model", "shop.revenue", vec!["shop.orders".into()]);
        let properties = BTreeMap::from([(PROPERTY.to_string(), model.property())]);
        assert_eq!(Writer::of(&properties), Some(model));
        let cdc = BTreeMap::from([(crate::SOURCE_PROPERTY.to_string(), "shop".to_string())]);
        assert_eq!(
            Writer::of(&cdc),
            Some(Writer::new("source", "shop", vec![]))
        );
        assert_eq!(Writer::of(&BTreeMap::new()), None);
        let files: Vec<String> = (1..=5).map(|i| format!("/in/{i}.csv")).collect();
        assert_eq!(imported(&files).name, "1.csv, 2.csv, 3.csv and 2 more");
    }
}
