//! What a function's reply becomes: its result (a table read from the path Basin gave it, a
//! JSON value, nothing, or one of those per event of a batch) or its error.

use std::path::Path;

use basin_core::{Error, Result};

use crate::invocation::{Invocation, Item, Output};
use crate::protocol::{self, Reply, ReplyOutput};
use crate::references;
use crate::workspace::Workspace;

/// The function's result; its table files are mapped when `map` (nothing can change them
/// any more), read into memory otherwise.
pub(crate) fn output(ws: &Workspace, inv: &Invocation, reply: Reply, map: bool) -> Result<Output> {
    if reply.status != "ok" {
        return Err(user_error(inv, reply.error));
    }
    if let Some(items) = reply.batch {
        if items.len() != ws.batch.len() {
            return Err(Error::invalid(format!(
                "function `{}` answered {} results for a batch of {} events",
                inv.function,
                items.len(),
                ws.batch.len()
            )));
        }
        let items = items.into_iter().enumerate().map(|(i, item)| Item {
            result: if item.status == "ok" {
                table_or_value(inv, ws, item.output, &ws.item_output_path(i), map)
            } else {
                Err(user_error(inv, item.error))
            },
            logs: item.logs,
        });
        return Ok(Output::Batch(items.collect()));
    }
    table_or_value(inv, ws, reply.output, &ws.output_path(), map)
}

/// A function's exception as Basin shows it: where, what, and the traceback.
fn user_error(inv: &Invocation, error: Option<protocol::UserError>) -> Error {
    let e = error.unwrap_or(protocol::UserError {
        kind: "Error".into(),
        message: "the function failed without saying why".into(),
        traceback: String::new(),
        file: None,
        line: None,
        hint: None,
    });
    let at = match (&e.file, e.line) {
        (Some(f), Some(l)) => format!(" at {}:{l}", f.display()),
        _ => String::new(),
    };
    let mut message = format!(
        "function `{}` raised {}{at}: {}",
        inv.function, e.kind, e.message
    );
    if !e.traceback.is_empty() {
        message.push_str("\n\n");
        message.push_str(e.traceback.trim_end());
    }
    let hint = match e.hint {
        Some(hint) => format!("{hint}; nothing was written"),
        None => "fix the function and invoke it again; nothing was written".to_string(),
    };
    Error::invalid(message).with_hint(hint)
}

/// What a call returned; a table only at the path Basin gave it.
fn table_or_value(
    inv: &Invocation,
    ws: &Workspace,
    output: Option<ReplyOutput>,
    expected: &Path,
    map: bool,
) -> Result<Output> {
    match output {
        Some(ReplyOutput::Table { path, batches }) => {
            if path != expected {
                return Err(Error::invalid(format!(
                    "function `{}` named {} as its output; outputs must be written to {}",
                    inv.function,
                    path.display(),
                    expected.display()
                ))
                .with_hint(
                    "write the table to the `output.path` of the request (docs/protocol.md)",
                ));
            }
            let (schema, written) = ws.read_table(&path, map)?;
            let batches = match batches {
                // Only where the caller reads the batches, not the file: a batch's events'
                // tables are appended from their files.
                Some(pieces) if ws.by_reference && expected == ws.output_path() => {
                    references::assemble(ws, &inv.function, &schema, written, pieces, map)?
                }
                Some(_) => {
                    return Err(Error::invalid(format!(
                        "function `{}` handed back batches by reference, which this \
                         invocation did not allow",
                        inv.function
                    ))
                    .with_hint("write the whole table to output.path (docs/protocol.md)"));
                }
                None => written,
            };
            Ok(Output::Table { schema, batches })
        }
        Some(ReplyOutput::Json { value }) => Ok(Output::Json(value)),
        Some(ReplyOutput::None) | None => Ok(Output::None),
    }
}
