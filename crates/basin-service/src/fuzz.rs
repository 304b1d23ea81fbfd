//! Fuzz target for `basin.toml` (see `basin-fuzz`), read the ways Basin reads it: the
//! lakehouse's settings, a pipeline project (`[project]`, `[parameters]`) and the triggers
//! declared beside the code.
//!
//! For any bytes: no panic and no hang; an error is the user's (never `Internal`) and has a
//! location: the file, then `:LINE:COLUMN` for TOML that does not parse or fit, or the
//! `[section]` and setting a value is wrong for.

use std::collections::BTreeMap;
use std::path::Path;

use basin_core::{Error, ErrorKind};
use basin_fuzz::Verdict;

use crate::config::Settings;
use crate::pipeline::{Project, resolve_parameters};
use crate::triggers::deploy::toml_triggers;

const WORDS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "\n",
    "#",
    ".",
    ",",
    "{",
    "}",
    "[sql]",
    "[server]",
    "[functions]",
    "[s3]",
    "[user]",
    "[pricing]",
    "[project]",
    "[parameters.x]",
    "[buckets.landing]",
    "[triggers.f.schedule]",
    "memory_limit",
    "query_timeout",
    "spill_limit",
    "header_read_timeout",
    "request_timeout",
    "max_upload_size",
    "keep_alive_seconds",
    "keep_warm",
    "max_uses",
    "max_kept",
    "reuse",
    "max_concurrency",
    "poll_seconds",
    "url",
    "path",
    "namespace",
    "name",
    "type",
    "default",
    "\"512MiB\"",
    "\"4GiB\"",
    "\"30s\"",
    "\"5m\"",
    "\"off\"",
    "\"99999999999999999999h\"",
    "\"1e400s\"",
    "0",
    "-1",
    "1e300",
    "inf",
    "-inf",
    "nan",
    "18446744073709551616",
    "true",
    "\"s3://bucket/prefix\"",
    "\"s3://\"",
    "\"a..b\"",
    "1979-05-27T07:32:00Z",
];

#[test]
fn basin_toml_corpus_replays_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    basin_fuzz::replay("basin_toml", |bytes| check_basin_toml(dir.path(), bytes));
}

#[test]
#[ignore = "fuzzing: run with scripts/fuzz.sh basin_toml"]
fn basin_toml_mutations() {
    let dir = tempfile::tempdir().unwrap();
    basin_fuzz::run("basin_toml", WORDS, |bytes| {
        check_basin_toml(dir.path(), bytes)
    });
}

fn check_basin_toml(dir: &Path, bytes: &[u8]) -> Verdict {
    let path = dir.join("basin.toml");
    std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let file = path.display().to_string();
    // Some of toml's errors (its recursion limit) have no position to report.
    let text = String::from_utf8_lossy(bytes);
    let spanless = toml::from_str::<toml::Table>(&text)
        .err()
        .is_some_and(|e| e.span().is_none());
    let located = |reading: &str, e: Error| located(&file, reading, spanless, e);
    if let Err(e) = Settings::load(dir) {
        located("the settings", e)?;
    }
    let params = match resolve_parameters(dir, &[]) {
        Ok(params) => params,
        Err(e) => {
            located("the parameters", e)?;
            BTreeMap::new()
        }
    };
    // No .py or .sql files: the project is read up to "declares no models".
    let project = Project::load(dir, Path::new("/nonexistent/sdk"), &params);
    if let Err(e) = futures::executor::block_on(project)
        && !e.message.ends_with("declares no models")
    {
        located("the project", e)?;
    }
    if let Err(e) = toml_triggers(dir) {
        located("the triggers", e)?;
    }
    Ok(())
}

/// A refusal must be the user's error and say where: the file, then a line and column or
/// a section.
fn located(file: &str, reading: &str, spanless: bool, e: Error) -> Verdict {
    if matches!(e.kind(), ErrorKind::Internal) {
        return Err(format!(
            "reading {reading}: an internal error: {}",
            e.message
        ));
    }
    // A file that is not text cannot be read at all (TOML is UTF-8).
    if matches!(e.kind(), ErrorKind::Io) && e.message.contains(file) {
        return Ok(());
    }
    let rest = e.message.strip_prefix(file).unwrap_or("");
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let line_and_column = rest
        .strip_prefix(':')
        .and_then(|r| r.split_once(": "))
        .and_then(|(at, _)| at.split_once(':'))
        .is_some_and(|(line, column)| digits(line) && digits(column));
    let section = rest.starts_with(": [") || rest.starts_with(" [");
    if line_and_column || section || (spanless && rest.starts_with(": ")) {
        Ok(())
    } else {
        Err(format!(
            "reading {reading}: the error has no location: {}",
            e.message
        ))
    }
}
