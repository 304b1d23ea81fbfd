//! The MCP door's one error mapping. A tool that fails answers as a tool (`isError: true`,
//! Basin's message and hint as text), so the model reads what went wrong and corrects
//! itself; only a message the protocol cannot carry out is a JSON-RPC error.

use basin_core::Error;
use serde_json::{Value, json};

/// A JSON-RPC error: the request itself is wrong.
pub(crate) struct Rpc {
    code: i64,
    message: String,
}

impl Rpc {
    /// -32700: the message is not JSON.
    pub(crate) fn parse(cause: &serde_json::Error) -> Self {
        Self {
            code: -32700,
            message: format!("not JSON: {cause}"),
        }
    }

    /// -32600: JSON, but not a JSON-RPC request.
    pub(crate) fn invalid_request(message: &str) -> Self {
        Self {
            code: -32600,
            message: message.to_string(),
        }
    }

    /// -32601: no such method.
    pub(crate) fn no_method(method: &str) -> Self {
        Self {
            code: -32601,
            message: format!("no method `{method}`"),
        }
    }

    /// -32602: the method exists, its parameters are wrong (an unknown tool or resource).
    pub(crate) fn invalid_params(message: String) -> Self {
        Self {
            code: -32602,
            message,
        }
    }

    pub(crate) fn reply(self, id: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": self.code, "message": self.message}})
    }
}

/// A tool's answer.
pub(crate) fn text(text: String) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": false})
}

/// A tool's failure, as its answer.
pub(crate) fn failed(e: &Error, remote: bool) -> Value {
    json!({"content": [{"type": "text", "text": told(e, remote)}], "isError": true})
}

/// What an agent reads of `e`: the message and hint. Over HTTP a failure on the server's
/// side shows its kind only, as at every door (`crate::errors::for_caller`); the local user
/// of `basin mcp` reads the whole error, as on the CLI.
pub(crate) fn told(e: &Error, remote: bool) -> String {
    let (message, hint) = if remote {
        crate::errors::for_caller(e)
    } else {
        (e.message.clone(), e.hint.clone())
    };
    match hint {
        Some(hint) => format!("{message}\nhint: {hint}"),
        None => message,
    }
}
