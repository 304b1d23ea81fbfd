//! Routers built from tables of `(path, method router)` pairs, as each door declares its
//! routes ([`crate::openapi::endpoints`], [`crate::iceberg_rest::endpoints`]).

use axum::Router;
use axum::routing::MethodRouter;

use crate::state::AppState;

/// A router of `(path, method router)` pairs; pairs with one path are merged.
pub(crate) fn route_table(
    routes: impl IntoIterator<Item = (&'static str, MethodRouter<AppState>)>,
) -> Router<AppState> {
    let mut by_path: std::collections::BTreeMap<&str, MethodRouter<AppState>> =
        std::collections::BTreeMap::new();
    for (path, handler) in routes {
        let merged = match by_path.remove(path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
}
