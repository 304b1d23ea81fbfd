//! Who asks the MCP door, through which transport.

use basin_service::Role;

use crate::state::AppState;

/// Who asks, through which transport.
#[derive(Clone)]
pub(crate) struct Agent {
    pub(crate) state: AppState,
    /// The caller's role: a token's over HTTP, an admin's for the local user over stdio.
    pub(crate) role: Role,
    /// Over HTTP: files on the server are not the caller's to read (`import_file` takes the
    /// file's content instead of a path).
    pub(crate) remote: bool,
}
