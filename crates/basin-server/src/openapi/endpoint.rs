//! One endpoint of the HTTP API, as each area's table declares it.

use axum::http::Method;
use axum::routing::MethodRouter;
use basin_service::Role;

use crate::state::AppState;

pub(crate) struct Endpoint {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    /// The least role that may call it (`None`: anyone, without a token).
    pub(crate) role: Option<Role>,
    pub(crate) summary: &'static str,
    /// Query parameters: name and meaning.
    pub(crate) query: &'static [(&'static str, &'static str)],
    /// The JSON body's fields: name, type and meaning.
    pub(crate) body: &'static [(&'static str, &'static str, &'static str)],
    /// Status codes besides 200 and what they mean.
    pub(crate) errors: &'static [(u16, &'static str)],
    pub(crate) handler: fn() -> MethodRouter<AppState>,
}

pub(super) const REF: (&str, &str) = ("ref", "branch, tag or REF@COMMIT to read (default: main)");
