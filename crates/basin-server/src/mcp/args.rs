//! A tool call's arguments, read as each tool needs them: a missing or mistyped one is the
//! caller's error, naming the tool and the argument.

use basin_core::{Error, Result};
use serde_json::Value;

/// A tool call's arguments.
pub(super) struct Args<'a> {
    pub(super) tool: &'static str,
    pub(super) values: &'a Value,
}

impl Args<'_> {
    pub(super) fn text(&self, key: &str) -> Option<String> {
        self.values[key].as_str().map(str::to_string)
    }

    pub(super) fn required(&self, key: &str) -> Result<String> {
        self.text(key).ok_or_else(|| {
            Error::invalid(format!("`{}` needs the argument `{key}`", self.tool))
                .with_hint("tools/list gives each tool's arguments")
        })
    }

    pub(super) fn number(&self, key: &str) -> Option<u64> {
        self.values[key].as_u64()
    }

    /// An object of strings (`files`, `params`); empty when missing.
    pub(super) fn strings(&self, key: &str) -> Result<std::collections::BTreeMap<String, String>> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(Default::default()),
            Some(value) => serde_json::from_value(value.clone()).map_err(|_| {
                Error::invalid(format!(
                    "`{}`: `{key}` must be an object of strings",
                    self.tool
                ))
                .with_hint(format!("e.g. {{\"{key}\": {{\"name\": \"text\"}}}}"))
            }),
        }
    }
}
