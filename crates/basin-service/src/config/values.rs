//! How values are written in basin.toml and the environment: sizes, durations, the
//! `BASIN_*` variables, and the error that points at a bad line of a TOML file.

use std::path::Path;

use basin_core::{Error, Result};
use serde::Deserialize;

/// The folder that marks a lakehouse and holds its state (catalog, config, caches), like
/// `.git`.
pub const BASIN_DIR: &str = ".basin";

pub mod env {
    pub const HOME: &str = "BASIN_HOME";
    pub const AUTHOR: &str = "BASIN_AUTHOR";
    pub const S3_ENDPOINT: &str = "BASIN_S3_ENDPOINT";
    pub const S3_REGION: &str = "BASIN_S3_REGION";
    pub const S3_ACCESS_KEY_ID: &str = "BASIN_S3_ACCESS_KEY_ID";
    pub const S3_SECRET_ACCESS_KEY: &str = "BASIN_S3_SECRET_ACCESS_KEY";
    pub const S3_SESSION_TOKEN: &str = "BASIN_S3_SESSION_TOKEN";
    pub const S3_PATH_STYLE: &str = "BASIN_S3_PATH_STYLE";
    pub const KEEP_ALIVE_SECONDS: &str = "BASIN_KEEP_ALIVE_SECONDS";
    pub const MAX_CONCURRENCY: &str = "BASIN_MAX_CONCURRENCY";
    /// This process's name in the events it runs (default: host name and process id).
    pub const NODE_NAME: &str = "BASIN_NODE_NAME";
    /// The user-level cache (function environments, `uv`); see `user_cache_dir`.
    pub const CACHE_DIR: &str = "BASIN_CACHE_DIR";
    const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
    const USER_HOME: &str = "HOME";

    /// Where Basin caches what every lakehouse of this user can share: `BASIN_CACHE_DIR`,
    /// else `$XDG_CACHE_HOME/basin`, else `~/.cache/basin` (as uv and pip keep theirs);
    /// `None` when none of them is set.
    pub fn user_cache_dir() -> Option<std::path::PathBuf> {
        if let Some(dir) = get(CACHE_DIR) {
            return Some(dir.into());
        }
        if let Some(dir) = get(XDG_CACHE_HOME) {
            return Some(std::path::PathBuf::from(dir).join("basin"));
        }
        get(USER_HOME).map(|home| std::path::PathBuf::from(home).join(".cache").join("basin"))
    }

    /// A variable a function declared as a secret (`@basin.python(secrets=[...])`).
    pub(crate) fn secret(name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    pub(crate) fn get(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    /// A numeric variable, if set; `what` says what it should be when it is not one.
    pub(crate) fn number<T: std::str::FromStr>(
        name: &str,
        what: &str,
    ) -> basin_core::Result<Option<T>> {
        get(name)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| basin_core::Error::invalid(format!("{name}={v} is not {what}")))
            })
            .transpose()
    }
}

/// A TOML file that does not parse, or does not fit what it should hold: the error names
/// the file, the line and the column, shows the line with a caret under the place (toml's
/// message alone names none of them), and for a mistyped key says which one was meant.
/// `hint` is where to read more.
pub(crate) fn toml_error(path: &Path, text: &str, e: &toml::de::Error, hint: &str) -> Error {
    let message = e.message().trim_end();
    let (at, snippet) = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let shown = text[start..]
                .split('\n')
                .next()
                .unwrap_or("")
                .trim_end_matches('\r');
            let column = before[start..].chars().count() + 1;
            // The caret spans the place, within its line (at least one character).
            let width = text
                .get(span.clone())
                .map_or(1, |s| s.split('\n').next().unwrap_or("").chars().count())
                .max(1);
            let gutter = " ".repeat(line.to_string().len());
            let pad: String = before[start..]
                .chars()
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            (
                format!(":{line}:{column}"),
                format!(
                    "\n{gutter} |\n{line} | {shown}\n{gutter} | {pad}{}",
                    "^".repeat(width)
                ),
            )
        }
        None => (String::new(), String::new()),
    };
    let error = Error::invalid(format!("{}{at}: {message}{snippet}", path.display()));
    let meant = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once("`, expected "))
        .and_then(|(field, expected)| {
            let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            basin_core::suggest(field, known)
        });
    match (meant, hint) {
        (Some(meant), "") => error.with_hint(format!("did you mean `{meant}`?")),
        (Some(meant), hint) => error.with_hint(format!("did you mean `{meant}`? ({hint})")),
        (None, "") => error,
        (None, hint) => error.with_hint(hint),
    }
}

/// A size in basin.toml: a number of bytes, or `"512MiB"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    pub(crate) fn bytes(&self, setting: &str) -> Result<u64> {
        match self {
            SizeValue::Bytes(n) => Ok(*n),
            // As the number 0 is (`handoff_pool = "0"`: none).
            SizeValue::Text(t) if t.trim() == "0" => Ok(0),
            SizeValue::Text(t) => basin_core::units::parse_size(t).map_err(|e| {
                Error::invalid(format!("{setting}: {}", e.message))
                    .with_hint("write e.g. \"512MiB\" or \"4GiB\"")
            }),
        }
    }

    /// A size of something held in memory: at least `at_least` bytes (smaller is raised).
    pub(crate) fn in_memory(&self, setting: &str, at_least: usize) -> Result<usize> {
        let bytes = self.bytes(setting)?;
        Ok(usize::try_from(bytes).unwrap_or(usize::MAX).max(at_least))
    }
}

/// A duration in basin.toml: seconds, or `"30s"`, `"5m"`; `0` or `"off"`: no limit.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(f64),
    Text(String),
}

impl DurationValue {
    pub(crate) fn limit(&self, setting: &str) -> Result<Option<std::time::Duration>> {
        match self {
            DurationValue::Seconds(s) if *s == 0.0 => Ok(None),
            // Positive and at most u64::MAX seconds (`1e300` is no duration).
            DurationValue::Seconds(s) if std::time::Duration::try_from_secs_f64(*s).is_ok() => {
                Ok(Some(std::time::Duration::from_secs_f64(*s)))
            }
            DurationValue::Text(t) if matches!(t.trim(), "off" | "none" | "0") => Ok(None),
            DurationValue::Text(t) => basin_core::units::parse_duration(t).map(Some).map_err(|e| {
                Error::invalid(format!("{setting}: {}", e.message))
                    .with_hint("write e.g. \"30s\" or \"5m\", or \"off\"")
            }),
            DurationValue::Seconds(s) => {
                Err(Error::invalid(format!("{setting}: {s} is not a duration")))
            }
        }
    }
}
