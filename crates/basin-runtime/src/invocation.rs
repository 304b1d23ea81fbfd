//! What one invocation is: its target, its request, what it returned, and its record.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use basin_core::{InvocationRecord, Result};

use crate::env::Env;
use crate::options::Limits;
use crate::protocol::Stream;
use crate::workspace::Workspace;

/// What runs: a Python function (by its source), or a program speaking the protocol.
#[derive(Clone, Debug)]
pub enum Target {
    Python {
        file: PathBuf,
        name: String,
        source: String,
    },
    Program {
        argv: Vec<String>,
    },
}

/// One invocation's request.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// How users name it, e.g. `clean.py:orders`.
    pub function: String,
    pub target: Target,
    pub env: Env,
    /// What the worker imports before forking: the environment's packages, and the modules
    /// of theirs the function imports ([`crate::Declaration::preload`]).
    pub preload: Vec<String>,
    pub event: serde_json::Value,
    /// A pipeline's parameters, for a function parameter named `params`.
    pub params: serde_json::Value,
    /// Environment variables the function declared (secrets), with their values.
    pub secrets: BTreeMap<String, String>,
    pub limits: Limits,
    /// At most this many invocations of this function at once.
    pub concurrency: Option<usize>,
}

/// Receives the function's stdout and stderr, line by line, as it runs.
pub type OutputSink = Arc<dyn Fn(Stream, &str) + Send + Sync>;

/// What a function returned.
#[derive(Debug)]
pub enum Output {
    Table {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    Json(serde_json::Value),
    None,
    /// A batch's results, one per event, in order.
    Batch(Vec<Item>),
}

/// One handler call of a batch: its output or error, and what it printed.
#[derive(Debug)]
pub struct Item {
    pub result: Result<Output>,
    pub logs: String,
}

impl Output {
    /// Rows of the tables it holds.
    pub(crate) fn rows(&self) -> u64 {
        match self {
            Output::Table { batches, .. } => batches.iter().map(|b| b.num_rows() as u64).sum(),
            Output::Batch(items) => items
                .iter()
                .filter_map(|i| i.result.as_ref().ok())
                .map(Output::rows)
                .sum(),
            Output::Json(_) | Output::None => 0,
        }
    }
}

/// An ended invocation: its metering record, and its output or error. The invocation's folder
/// (with the output file) lives as long as this does.
pub struct Finished {
    pub record: InvocationRecord,
    pub result: Result<Output>,
    /// Mechanisms the child could not use (e.g. no network namespace); empty normally.
    pub unconfined: Vec<String>,
    pub(crate) workspace: Workspace,
}

impl Finished {
    /// The Arrow IPC file holding a table output; none when the workspace let the function
    /// hand batches back by reference (`Workspace::tables_by_reference`): the file may then
    /// hold only part of the table.
    pub fn output_file(&self) -> Option<PathBuf> {
        let table = matches!(self.result, Ok(Output::Table { .. }));
        (table && !self.workspace.by_reference).then(|| self.workspace.output_path())
    }

    /// The Arrow IPC file holding the table the batch's `i`th call returned.
    pub fn item_output_file(&self, i: usize) -> Option<PathBuf> {
        let Ok(Output::Batch(items)) = &self.result else {
            return None;
        };
        matches!(items.get(i)?.result, Ok(Output::Table { .. }))
            .then(|| self.workspace.item_output_path(i))
    }
}
