//! `basin export`: the lakehouse as a declaration that plans to no change. Namespaces and
//! tables of one branch, the other branches (not the ones pipelines make for their runs),
//! tags at their commits, and named tokens (never a secret). Written by hand rather than by
//! a TOML serializer, so a table's columns read one per line.

use std::fmt::Write;

use basin_catalog::{Content, RefKind};
use basin_core::Result;

use super::spec::TableDecl;
use super::table::observed;
use crate::Lakehouse;

pub(crate) async fn export(lake: &Lakehouse, branch: Option<&str>) -> Result<String> {
    let at = lake.resolve(branch).await?;
    let mut out = format!(
        "# The lakehouse as `basin export` found it on `{}` ({}).\n\
         # `basin plan` compares it with the lakehouse; `basin apply` makes it so.\n",
        at.spec,
        basin_core::time::shown(basin_core::time::now_ms())
    );
    for (key, content) in lake.catalog().contents(&at).await? {
        match content {
            Content::Namespace { properties } => {
                let _ = write!(out, "\n[namespaces.{}]\n", quoted_key(key.as_str()));
                write_properties(&mut out, &properties);
            }
            Content::Table { metadata_location } => {
                let table = lake
                    .iceberg_tables()
                    .load_from(&key, &metadata_location)
                    .await?;
                write_table(&mut out, key.as_str(), &observed(table.metadata()));
            }
        }
    }
    let own = at.branch.clone().unwrap_or_default();
    for r in lake.catalog().list_refs().await? {
        match r.kind {
            RefKind::Branch if r.name != own && !crate::pipeline::is_pipeline_branch(&r.name) => {
                let _ = write!(out, "\n[branches.{}]\n", quoted_key(&r.name));
            }
            RefKind::Tag => {
                let _ = write!(
                    out,
                    "\n[tags.{}]\nat = {}\n",
                    quoted_key(&r.name),
                    string(r.head.as_str())
                );
            }
            RefKind::Branch => {}
        }
    }
    for token in lake.tokens().list().await? {
        if token.name.is_empty() {
            continue;
        }
        let _ = write!(out, "\n[tokens.{}]\n", quoted_key(&token.name));
        if token.grants.is_empty() {
            let _ = writeln!(out, "role = {}", string(&token.role));
        } else {
            let grants: Vec<String> = token.grants.iter().map(|g| string(g)).collect();
            let _ = writeln!(out, "grants = [{}]", grants.join(", "));
        }
    }
    Ok(out)
}

fn write_table(out: &mut String, name: &str, table: &TableDecl) {
    let _ = write!(out, "\n[tables.{}]\ncolumns = [\n", string(name));
    for column in &table.columns {
        let required = if column.required {
            ", required = true"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {{ name = {}, type = {}{required} }},",
            string(&column.name),
            string(&column.data_type)
        );
    }
    out.push_str("]\n");
    for (field, list) in [("partition", &table.partition), ("sort", &table.sort)] {
        if !list.is_empty() {
            let items: Vec<String> = list.iter().map(|s| string(s)).collect();
            let _ = writeln!(out, "{field} = [{}]", items.join(", "));
        }
    }
    write_properties(out, &table.properties);
}

fn write_properties(out: &mut String, properties: &std::collections::BTreeMap<String, String>) {
    if properties.is_empty() {
        return;
    }
    out.push_str("properties = { ");
    let pairs: Vec<String> = properties
        .iter()
        .map(|(k, v)| format!("{} = {}", string(k), string(v)))
        .collect();
    out.push_str(&pairs.join(", "));
    out.push_str(" }\n");
}

/// A TOML string, quoted and escaped.
fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn quoted_key(s: &str) -> String {
    toml_edit::Key::new(s).display_repr().into_owned()
}
